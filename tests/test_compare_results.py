"""ci/compare_results.py: the before/after check of a refactor finds every moved verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hfci.results import Record, write_results

SCRIPT = Path(__file__).resolve().parents[1] / "ci" / "compare_results.py"
META = {"fingerprint": "cpu-x-torch0-transformers0", "environment": {"device": "cpu"}}


def run(before: Path, after: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(before), str(after), *flags], capture_output=True, text=True
    )


def write(directory: Path, outcome: str, reason: str = "") -> Path:
    records = [
        Record("bert/Model", "bert", "Model", "cpu", "forward", "passed", 0.1),
        Record("bert/Model", "bert", "Model", "cpu", "parity", outcome, 0.1, reason=reason, runner="sdpa"),
    ]
    return write_results(directory, "cpu", records, META)


def test_identical_runs_pass_and_a_moved_verdict_fails(tmp_path: Path) -> None:
    same = run(write(tmp_path / "a", "passed"), write(tmp_path / "b", "passed"))
    assert same.returncode == 0 and "identical" in same.stdout
    moved = run(tmp_path / "a", write(tmp_path / "c", "failed", "max abs diff 0.2"))
    assert moved.returncode == 1
    assert "outcome: bert/Model/cpu/sdpa/parity: passed -> failed (max abs diff 0.2)" in moved.stdout
    reason = run(write(tmp_path / "d", "failed", "one"), write(tmp_path / "e", "failed", "two"), "--reasons")
    assert reason.returncode == 1 and "reason: bert/Model/cpu/sdpa/parity" in reason.stdout


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    out = run(tmp_path / "absent", tmp_path / "absent")
    assert out.returncode == 2 and "no such results file or directory" in out.stderr
