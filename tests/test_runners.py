"""Runners: the built-ins, and a user's own runner named in a throwaway project's pyproject.toml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hfci import runners
from hfci.catalog import load_catalog


def test_builtins_and_tolerances():
    assert {"eager", "sdpa", "compile", "bf16", "fp16", "export"} <= set(runners.available())
    assert runners.tolerance("bf16") > runners.tolerance("fp16") > runners.tolerance("sdpa")


def test_unknown_and_malformed_runners_are_clear_errors(tmp_path):
    with pytest.raises(runners.RunnerError, match="unknown runner 'nope'; valid: eager, sdpa"):
        runners.load("nope", tmp_path / "none.toml")
    project = tmp_path / "pyproject.toml"
    project.write_text('[tool.hfci.runners]\nbad = "no_colon"\nmissing = "no_such_module_x:run"\n')
    with pytest.raises(runners.RunnerError, match="'no_colon' is not of the form 'module:callable'"):
        runners.load("bad", project)
    with pytest.raises(runners.RunnerError, match="cannot import 'no_such_module_x:run'"):
        runners.load("missing", project)
    with pytest.raises(runners.RunnerError, match="returned str"):
        runners.outputs_of("x", "not a tensor")


def test_sdpa_and_bf16_agree_with_eager_on_bert():
    from hfci.case import build_case
    from hfci.checks import check_parity

    case = build_case(load_catalog()["bert"], "ForMaskedLM")
    check_parity(case, "sdpa")
    check_parity(case, "bf16")


def test_compile_draws_the_random_numbers_eager_draws():
    torch = pytest.importorskip("torch")

    class Sampler(torch.nn.Module):
        """Adds noise in its forward, as a model with a random canvas does."""

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(x) + torch.rand_like(x)

    model, inputs = Sampler(), {"x": torch.ones(2, 4)}
    torch.testing.assert_close(runners.compile_(model, inputs), runners.eager(model, inputs))


PROJECT = {
    "pyproject.toml": """
        [project]
        name = "throwaway"
        version = "0"

        [tool.hfci.runners]
        mine = "my_backend:run"
        broken = "my_backend:broken"
        noisy = "my_backend:noisy"
        """,
    "my_backend.py": """
        import torch

        def run(model, inputs):
            # "My backend": no_grad instead of inference_mode, channels as they come.
            with torch.no_grad():
                return model(**inputs)

        def broken(model, inputs):
            return "oops"

        def noisy(model, inputs):
            raise RuntimeError("the cause\\n\\nSet NOISY_VERBOSE=1 for the internal stack trace")
        """,
}


def make_project(root: Path) -> Path:
    for name, text in PROJECT.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    return root


def run_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "hfci.cli",
        "run",
        "--workers",
        "0",
        "--model",
        "bert",
        "--device",
        "cpu",
    ]
    command += ["--results-dir", str(project / "results"), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, cwd=project, capture_output=True, text=True, env=env)


def test_a_project_runs_hfci_with_its_own_runner(tmp_path):
    project = make_project(tmp_path)
    ok = run_in(project, "--runner", "mine", "-k", "ForMaskedLM")
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "test_parity[bert/ForMaskedLM-cpu-mine] PASSED" in ok.stdout or "1 passed" in ok.stdout
    bad = run_in(project, "--runner", "broken", "-k", "ForMaskedLM")
    assert bad.returncode == 1
    assert "runner 'broken' returned str" in bad.stdout
    noisy = run_in(project, "--runner", "noisy", "-k", "ForMaskedLM")
    assert noisy.returncode == 1
    records = json.loads((project / "results" / "results-cpu.json").read_text())["records"]
    (record,) = [r for r in records if r["check"] == "parity"]
    assert record["reason"].startswith("RuntimeError: the cause"), record["reason"]
    unknown = run_in(project, "--runner", "absent", "-k", "ForMaskedLM")
    assert unknown.returncode == 4
    assert (
        "unknown runner 'absent'; valid: eager, sdpa, compile, bf16, fp16, export, mine, broken, noisy"
        in unknown.stderr
    )


@pytest.mark.parametrize(
    ("runner", "model_type", "head"), [("export", "gpt2", "Model"), ("fp16", "bert", "Model")]
)
def test_export_and_half_precision_runners(runner, model_type, head):
    from hfci.case import build_case
    from hfci.checks import CheckSkipped, check_parity

    case = build_case(load_catalog()[model_type], head)
    try:
        check_parity(case, runner)
    except CheckSkipped as why:
        # Only a CPU build without float16 matmul may skip, and it says so.
        assert "float16" in str(why)


def test_sdpa_skips_a_model_without_sdpa():
    from hfci.case import build_case
    from hfci.checks import CheckSkipped, check_parity

    record = next(
        r
        for r in load_catalog().select(models=["gpt2", "bert", "albert", "xlnet"])
        if r.model_type == "xlnet"
    )
    case = build_case(record, "Model")
    if getattr(case.model, "_supports_sdpa", False):
        pytest.skip("xlnet gained sdpa support")
    with pytest.raises(CheckSkipped, match="does not support sdpa"):
        check_parity(case, "sdpa")
