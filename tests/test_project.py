"""``[tool.hfci]`` in a user's pyproject.toml: their runners and their own model entries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BACKEND = """
    def broken(model, inputs):
        output = model(**inputs)
        return {key: value * 2 for key, value in output.items()}
"""
PYPROJECT = """
    [project]
    name = "backend"

    [tool.hfci.runners]
    broken = "backend:broken"
    {extra}
"""
KNOWN = """
    [[tool.hfci.models.bert.known_failures]]
    check = "parity"
    runner = "broken"
    raises = "CheckFailed"
    match = "broken differs from eager"
    reason = "our engine doubles bert's outputs (issue 7 of our tracker)"
"""


def project(root: Path, extra: str = "") -> Path:
    root.mkdir(exist_ok=True)
    (root / "backend.py").write_text(textwrap.dedent(BACKEND).lstrip())
    (root / "pyproject.toml").write_text(
        textwrap.dedent(PYPROJECT).lstrip().format(extra=textwrap.dedent(extra))
    )
    return root


def run(root: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--run-model-tests"]
    command += ["--model", "bert", "--one-head", "--runner", "broken", "--results-dir", str(root / "results")]
    env = {
        "PYTHONPATH": str(root),
        **{k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"},
    }
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)


def test_the_project_s_own_known_failure_is_expected_with_its_reason(tmp_path: Path) -> None:
    failing = run(project(tmp_path / "without"))
    assert failing.returncode == 1, failing.stdout[-2000:]
    known = run(project(tmp_path / "with", KNOWN))
    assert known.returncode == 0, known.stdout[-2000:]
    records = json.loads((tmp_path / "with" / "results" / "results-cpu.json").read_text())["records"]
    (parity,) = [r for r in records if r["check"] == "parity"]
    assert parity["outcome"] == "xfailed" and parity["reason"].startswith("our engine doubles bert's outputs")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[tool.hfci.colour]\nred = 1\n",
            "[tool.hfci]: unknown key 'colour'; valid: runners, models, select, checkpoints, baselines, matrices, results",
        ),
        ("[tool.hfci]\nbaselines = 3\n", "[tool.hfci] baselines must be a folder path, got 3"),
        ('[tool.hfci.select]\nteir = ["critical"]\n', "unknown option 'teir'; valid: category, family, tier"),
        ("[tool.hfci.select]\none-head = 'yes'\n", "one-head = 'yes': expected true or false"),
        ("[tool.hfci.select]\ntier = 3\n", "tier = 3: expected a string, a list of strings or a boolean"),
        (
            '[[tool.hfci.models.bert.known_failures]]\nchek = "forward"\nreason = "x"\n',
            "[tool.hfci.models.bert] known_failures: unknown key 'chek'; valid: check, head",
        ),
        ('[[tool.hfci.models.bert.known_failures]]\ncheck = "forward"\n', "every entry needs a reason"),
        ("[tool.hfci.models.bert]\nconfig = {}\nhints = {}\n", "unknown key 'hints'; valid: config, inputs"),
    ],
)
def test_a_bad_key_is_one_clear_error(tmp_path: Path, extra: str, message: str) -> None:
    done = run(project(tmp_path, extra))
    assert done.returncode == 4, done.stdout[-1000:]
    assert message in done.stderr


FOLDERS = """
    [tool.hfci]
    results = "out/results"
    baselines = "perf"

    [tool.hfci.select]
    model = "bert"
    one-head = true
"""


def test_the_project_s_default_selection_and_folders(tmp_path: Path) -> None:
    root = project(tmp_path, FOLDERS)
    (root / "sub").mkdir()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--run-model-tests"]
    # From a subfolder: the folders are the project's, found from its pyproject.toml.
    done = subprocess.run(
        [*command, "-k", "forward", "--update-baselines"], cwd=root / "sub", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = json.loads((root / "out" / "results" / "results-cpu.json").read_text())["records"]
    assert [(r["case"], r["check"]) for r in records] == [("bert/Model", "forward")]
    assert len(list((root / "perf").glob("*.json"))) == 1
    assert not (root / "sub" / "results").exists() and not (root / "sub" / "baselines").exists()
    # An option on the command line replaces that option's default, and only that one.
    done = subprocess.run(
        [*command, "--model", "gpt2", "--collect-only", "-k", "forward"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test_forward[gpt2/Model-cpu]" in done.stdout and "bert" not in done.stdout
    assert "ForCausalLM" not in done.stdout  # one-head is still the project's default
    listed = subprocess.run(
        [sys.executable, "-m", "hfci.cli", "catalog", "--format", "json"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert [m["model_type"] for m in json.loads(listed.stdout)["models"]] == ["bert"]
