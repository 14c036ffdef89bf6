"""ci/commit_baselines.py against real git repositories and a bare remote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "ci" / "commit_baselines.py"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def clone(remote: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(where)], check=True)
    git(where, "config", "user.email", "ci@example.invalid")
    git(where, "config", "user.name", "ci")
    return where


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = clone(bare, tmp_path / "seed")
    (seed / "baselines").mkdir()
    (seed / "baselines" / "cpu.json").write_text('{"cases": {}}\n')
    (seed / "README").write_text("x\n")
    git(seed, "add", ".")
    git(seed, "commit", "-qm", "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


def run_script(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--pause", "0", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def test_nothing_to_commit(remote, tmp_path):
    work = clone(remote, tmp_path / "work")
    out = run_script(work, "baselines")
    assert out.returncode == 0
    assert "no baseline changes" in out.stdout
    assert git(work, "rev-list", "--count", "HEAD").strip() == "1"


def test_push_that_loses_the_race_rebases_and_lands(remote, tmp_path):
    ours = clone(remote, tmp_path / "ours")
    theirs = clone(remote, tmp_path / "theirs")
    # Someone else lands a code change on main after we checked out.
    (theirs / "README").write_text("changed\n")
    git(theirs, "commit", "-qam", "code change")
    git(theirs, "push", "-q", "origin", "HEAD:main")

    (ours / "baselines" / "cpu.json").write_text('{"cases": {"bert/Model": {}}}\n')
    out = run_script(ours, "baselines")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "push rejected (attempt 1/5)" in out.stdout
    assert "pushed on attempt 2" in out.stdout
    log = git(remote, "log", "--format=%s", "main").splitlines()
    assert log == ["Refresh performance baselines [skip ci]", "code change", "seed"]
    assert "bert/Model" in git(remote, "show", "main:baselines/cpu.json")


def test_gives_up_after_bounded_retries(remote, tmp_path):
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho rejected by policy >&2\nexit 1\n")
    hook.chmod(0o755)
    work = clone(remote, tmp_path / "work")
    (work / "baselines" / "cpu.json").write_text('{"cases": {"x": {}}}\n')
    out = run_script(work, "baselines", "--retries", "3")
    assert out.returncode == 1
    assert out.stdout.count("push rejected") == 3
    assert "gave up after 3 attempts" in out.stderr
