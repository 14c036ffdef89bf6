"""With hfci installed, ``pytest --run-model-tests`` in any project runs the model tests beside its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_mine.py").write_text("def test_mine():\n    assert 1 + 1 == 2\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "mine"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    )
    return tmp_path


def pytest_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_the_flag_adds_the_model_tests_to_the_project_s_own(project: Path, workers: list[str]) -> None:
    selection = [
        "--model",
        "bert",
        "--one-head",
        "--no-baseline-check",
        "-k",
        "forward or determinism or mine",
    ]
    done = pytest_in(project, "--run-model-tests", *selection, *workers)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout  # the project's test, and bert/Model's forward and determinism
    assert "1 cases, 2 checks: 2 passed" in done.stdout
    assert (project / "results" / "results-cpu.json").is_file()


def test_without_the_flag_the_project_s_pytest_stays_its_own(project: Path) -> None:
    done = pytest_in(project, "--collect-only")
    assert done.returncode == 0, done.stderr
    assert "1 test collected" in done.stdout and "bert" not in done.stdout


def test_a_run_that_names_the_suite_collects_it_once(project: Path) -> None:
    done = pytest_in(
        project,
        "--pyargs",
        "hfci.pytest.suite",
        "--run-model-tests",
        "--model",
        "bert",
        "--one-head",
        "--collect-only",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("test_forward[bert/Model-cpu]") == 1


def test_plain_pytest_runs_the_critical_text_models_and_writes_results(project: Path) -> None:
    """What a user of the predecessor typed, with nothing of hfci's spelled out."""
    done = pytest_in(project, "--run-model-tests", "-m", "text", "--tier", "critical", "--no-baseline-check")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = json.loads((project / "results" / "results-cpu.json").read_text())["records"]
    cases = {r["case"] for r in records}
    assert {r["category"] for r in records} == {"text"} and {r["tier"] for r in records} == {"critical"}
    assert {"bert/ForMaskedLM", "gpt2/LMHeadModel", "t5/ForConditionalGeneration"} <= cases
    assert {r["check"] for r in records} >= {"forward", "determinism", "save_load", "generate", "benchmark"}
    assert "1 passed" not in done.stdout  # the project's own test was deselected by -m text
