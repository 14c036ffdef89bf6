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
        ("[tool.hfci.colour]\nred = 1\n", "[tool.hfci]: unknown key 'colour'; valid: runners, models"),
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
