"""``hfci baselines commit`` against real git: a bare remote, clones that race it, hooks that refuse.

One delta comes from a real ``pytest --update-baselines --baseline-delta`` run; the others are
built in-process by the same function the session calls (``hfci.baselines.delta``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hfci import baselines, matrix
from hfci.catalog import load_catalog
from hfci.cli import suite_command
from hfci.devices import fingerprint
from hfci.results import Record
from hfci.selection import Selection

FP = fingerprint("cpu")  # this machine's: the real run's delta must fold into the seeded file
BASELINE = f"baselines/{FP}.json"
DURATIONS = "matrices/durations.json"
BERT = Selection(model=("bert",)).case_ids(load_catalog())
OLD = {"protocol": 0, "ratio": 999.0}  # no protocol this hfci compares with: a refresh replaces it
SEED_CASES = {
    **{case: {"checks": {"benchmark": "passed"}, "duration": 99.0, "perf": OLD} for case in BERT},
    **{
        f"{name}/Model": {"checks": {"benchmark": "passed"}, "duration": 2.0, "perf": {"ratio": 2.0}}
        for name in "abcde"
    },
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def clone(remote: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(where)], check=True)
    git(where, "config", "user.email", "ci@example.invalid")
    git(where, "config", "user.name", "ci")
    return where


def seed_baseline(directory: Path) -> Path:
    """The committed baseline, byte for byte the same wherever it is written."""
    payload = {
        "schema": baselines.SCHEMA,
        "fingerprint": FP,
        "environment": {"device": "cpu"},
        "cases": SEED_CASES,
    }
    path = baselines.path_for(FP, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return path


def on_main(remote: Path, path: str = BASELINE) -> dict:
    return json.loads(git(remote, "show", f"main:{path}"))


@pytest.fixture(scope="module")
def real_shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shard 3/3 of bert's benchmarks, measured for real, as a refresh's shard job runs it."""
    work = tmp_path_factory.mktemp("real-shard")
    seed_baseline(work / "baselines")
    command = [*suite_command(), "--model", "bert", "--device", "cpu", "--shard", "3/3", "-k", "benchmark"]
    command += ["--results-dir", "results", "--baselines-dir", "baselines", "--recheck-after", "0"]
    command += ["--update-baselines", "--baseline-delta", "deltas"]
    run = subprocess.run(command, cwd=work, capture_output=True, text=True)
    assert "baseline delta written" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    (delta,) = (work / "deltas").glob("*.delta.json")
    return delta


def shard_delta(where: Path, cases: list[str], shard: str, complete: bool = True) -> Path:
    """A delta as the session builds one, re-measuring ``cases`` with new figures."""
    base = seed_baseline(where / "base")
    records = [
        Record(case, *case.split("/"), "cpu", "benchmark", "passed", 30.0, metrics={"perf": {"ratio": 7.0}})
        for case in cases
    ]
    return baselines.write_delta(
        where / "deltas", base, records, {"device": "cpu"}, FP, shard=shard, complete=complete
    )


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = clone(bare, tmp_path / "seed")
    seed_baseline(seed / "baselines")
    durations = {(case, "cpu"): 2.0 for case in SEED_CASES} | {("x/Model", "cuda"): 8.0}
    matrix.write_durations(durations, seed / DURATIONS)
    (seed / "README").write_text("x\n")
    git(seed, "add", ".")
    git(seed, "commit", "-qm", "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


@pytest.fixture
def shards(tmp_path: Path, real_shard: Path) -> Path:
    """Three complete shards in one artifacts directory, as download-artifact lays them out."""
    artifacts = tmp_path / "shards"
    (artifacts / "baseline-3").mkdir(parents=True)
    (artifacts / "baseline-3" / real_shard.name).write_bytes(real_shard.read_bytes())
    for index, case in ((1, "a/Model"), (2, "b/Model")):
        made = shard_delta(tmp_path / f"made-{index}", [case], f"{index}/3")
        (artifacts / f"baseline-{index}").mkdir()
        (artifacts / f"baseline-{index}" / made.name).write_bytes(made.read_bytes())
    return artifacts


def commit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hfci.cli", "baselines", "commit", *args, "--pause", "0"]
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)


def measured(delta: Path) -> dict:
    return json.loads(delta.read_text())["cases"]


def assert_every_shard_landed(remote: Path, shards: Path) -> dict:
    cases = on_main(remote)["cases"]
    for delta in sorted(shards.rglob("*.delta.json")):
        for case, entry in measured(delta).items():
            assert cases[case]["perf"] == entry["perf"], (delta, case)
            assert cases[case]["checks"] == entry["checks"]
    return cases


def test_every_shard_lands_and_the_rest_is_kept(remote, shards, tmp_path, real_shard):
    ours = clone(remote, tmp_path / "ours")
    head = git(ours, "rev-parse", "HEAD")
    out = commit(ours, str(shards), "--into", "baselines", "--durations", DURATIONS, "--expect-shards", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    real = measured(real_shard)
    assert real and set(real) <= set(BERT)
    assert (
        f"{len(real) + 2} cases re-measured" in out.stdout and "shard 1/3, shard 2/3, shard 3/3" in out.stdout
    )
    cases = assert_every_shard_landed(remote, shards)
    assert cases["a/Model"]["perf"] == cases["b/Model"]["perf"] == {"ratio": 7.0}
    for case in {*SEED_CASES} - {*real, "a/Model", "b/Model"}:
        assert cases[case] == SEED_CASES[case], case
    for case in real:
        assert cases[case]["perf"]["protocol"] != 0  # measured now, by this hfci
    # The durations in the same commit, [skip ci], on top of the seed.
    assert git(remote, "log", "--format=%s", "main").splitlines() == [
        "Refresh performance baselines [skip ci]",
        "seed",
    ]
    changed = git(remote, "show", "--name-only", "--format=", "main").split()
    assert sorted(changed) == sorted([BASELINE, DURATIONS])
    (tmp_path / "d.json").write_text(git(remote, "show", f"main:{DURATIONS}"))
    durations = matrix.read_durations([tmp_path / "d.json"])
    assert durations["a/Model", "cpu"] == 30.0 and durations["c/Model", "cpu"] == 2.0
    assert durations["x/Model", "cuda"] == 8.0
    for case in real:
        assert durations[case, "cpu"] == cases[case]["duration"]
    # The checkout it ran in is as it was: no reset, no commit, no worktree left behind.
    assert git(ours, "rev-parse", "HEAD") == head
    assert git(ours, "status", "--porcelain") == ""
    assert len(git(ours, "worktree", "list").splitlines()) == 1
    # The same deltas again change nothing.
    again = commit(ours, str(shards), "--into", "baselines", "--durations", DURATIONS)
    assert again.returncode == 0 and "no baseline changes" in again.stdout
    assert len(git(remote, "log", "--format=%s", "main").splitlines()) == 2


def hand_edit(work: Path, edit) -> None:
    path = work / BASELINE
    payload = json.loads(path.read_text())
    edit(payload["cases"])
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    git(work, "commit", "-qam", "hand edit")


def test_a_concurrent_push_and_a_hand_edit_are_kept(remote, shards, tmp_path):
    ours = clone(remote, tmp_path / "ours")  # cloned before main moved: its copy is stale
    theirs = clone(remote, tmp_path / "theirs")

    def first(cases: dict) -> None:
        cases["b/Model"]["note"] = "measured on a noisy runner"  # on an entry a shard replaces
        cases["c/Model"]["perf"] = {"ratio": 5.5}  # a case no shard measured

    hand_edit(theirs, first)
    git(theirs, "push", "-q", "origin", "HEAD:main")

    def second(cases: dict) -> None:
        cases["a/Model"]["note"] = "keep me"  # next to b/Model, also measured
        cases["d/Model"]["checks"] = {"benchmark": "failed"}

    hand_edit(theirs, second)
    # Our first push finds main moved again: this hook lands `second` just before it.
    marker = tmp_path / "raced"
    hook = ours / ".git" / "hooks" / "pre-push"
    hook.write_text(
        textwrap.dedent(f"""\
            #!{sys.executable}
            import os, pathlib, subprocess, sys
            marker = pathlib.Path({str(marker)!r})
            if not marker.exists():
                marker.write_text("x")
                env = {{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}}
                subprocess.run(["git", "-C", {str(theirs)!r}, "push", "-q", "origin", "HEAD:main"], check=True, env=env)
            """)
    )
    hook.chmod(0o755)
    out = commit(ours, str(shards), "--into", "baselines", "--durations", DURATIONS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert marker.exists()
    assert "push rejected (attempt 1/5)" in out.stdout and "on attempt 2" in out.stdout
    cases = assert_every_shard_landed(remote, shards)
    assert cases["b/Model"]["note"] == "measured on a noisy runner"
    assert cases["b/Model"]["perf"] == {"ratio": 7.0}
    assert cases["a/Model"]["note"] == "keep me"
    assert cases["c/Model"]["perf"] == {"ratio": 5.5}
    assert cases["d/Model"]["checks"] == {"benchmark": "failed"}
    assert git(remote, "log", "--format=%s", "main").splitlines() == [
        "Refresh performance baselines [skip ci]",
        "hand edit",
        "hand edit",
        "seed",
    ]


def test_a_cancelled_run_commits_nothing(remote, tmp_path):
    ours = clone(remote, tmp_path / "ours")
    tip = git(remote, "rev-parse", "main")
    cut = shard_delta(tmp_path / "cut", ["a/Model"], "1/2", complete=False)
    out = commit(ours, str(cut.parent), "--into", "baselines")
    assert out.returncode == 0, out.stderr
    assert "no complete delta: nothing to commit" in out.stdout
    assert f"skipped: {cut} (shard 1/2 did not complete)" in out.stdout
    empty = tmp_path / "no-artifacts"
    empty.mkdir()
    out = commit(ours, str(empty), "--into", "baselines")
    assert out.returncode == 0 and "no complete delta" in out.stdout
    assert git(remote, "rev-parse", "main") == tip


def test_two_deltas_claiming_one_case_commit_nothing(remote, tmp_path):
    ours = clone(remote, tmp_path / "ours")
    tip = git(remote, "rev-parse", "main")
    first = shard_delta(tmp_path / "one", ["a/Model", "b/Model"], "1/2")
    second = shard_delta(tmp_path / "two", ["b/Model"], "2/2")
    out = commit(ours, str(first), str(second), "--into", "baselines")
    assert out.returncode == 2
    assert str(first) in out.stderr and str(second) in out.stderr and "'b/Model'" in out.stderr
    assert git(remote, "rev-parse", "main") == tip


def test_a_protected_branch_stops_at_once_and_a_pull_request_branch_gets_the_refresh(
    remote, shards, tmp_path
):
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(
        textwrap.dedent("""\
            #!/bin/sh
            while read old new ref; do
              if [ "$ref" = "refs/heads/main" ]; then
                echo "error: GH006: Protected branch update failed for refs/heads/main." >&2
                echo "error: Changes must be made through a pull request." >&2
                exit 1
              fi
            done
            """)
    )
    hook.chmod(0o755)
    ours = clone(remote, tmp_path / "ours")
    tip = git(remote, "rev-parse", "main")
    out = commit(ours, str(shards), "--into", "baselines", "--durations", DURATIONS)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "origin/main is protected" in out.stdout and "GH006" in out.stdout
    assert "--pull-request BRANCH" in out.stdout
    assert "push rejected" not in out.stdout  # no retries against a policy
    branch = "hfci/refresh-baselines"
    for _attempt in range(2):  # the second run replaces the branch (force-with-lease)
        out = commit(
            ours, str(shards), "--into", "baselines", "--durations", DURATIONS, "--pull-request", branch
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "pushed" in out.stdout and f"origin/{branch}" in out.stdout
        assert "no pull request opened" in out.stdout
        assert git(remote, "rev-parse", "main") == tip
        assert git(remote, "rev-parse", f"{branch}~1") == tip  # one refresh commit on main's tip
    refreshed = json.loads(git(remote, "show", f"{branch}:{BASELINE}"))["cases"]
    assert refreshed["a/Model"]["perf"] == {"ratio": 7.0}
    assert DURATIONS in git(remote, "show", "--name-only", "--format=", branch)


def test_a_stopped_run_writes_an_incomplete_delta_and_the_option_needs_update_baselines(tmp_path):
    (tmp_path / "planted.py").write_text(
        textwrap.dedent("""\
            import pytest

            @pytest.hookimpl(tryfirst=True)
            def pytest_runtest_call(item):
                raise AssertionError("planted failure")
            """)
    )
    command = [*suite_command(), "--model", "bert", "--device", "cpu", "-k", "benchmark", "-p", "planted"]
    command += ["--baselines-dir", "baselines", "--update-baselines", "--baseline-delta", "deltas", "-x"]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "(partial: a merge skips it)" in run.stdout, run.stdout[-3000:]
    (delta,) = (tmp_path / "deltas").glob(f"{FP}.all.delta.json")
    payload = json.loads(delta.read_text())
    assert payload["complete"] is False and payload["shard"] is None and payload["base"] is None
    assert len(payload["cases"]) == 1  # the one check that ran before -x stopped the run
    assert not (tmp_path / "baselines").exists()
    alone = [*suite_command(), "--model", "bert", "--baseline-delta", "deltas", "--collect-only", "-q"]
    refused = subprocess.run(alone, cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 4
    assert "--baseline-delta deltas needs --update-baselines" in refused.stderr


def test_a_branch_that_keeps_moving_is_given_up_on_after_the_retries(remote, tmp_path):
    ours = clone(remote, tmp_path / "ours")
    theirs = clone(remote, tmp_path / "theirs")
    # Before each of our pushes someone else lands a commit: main never holds still.
    hook = ours / ".git" / "hooks" / "pre-push"
    hook.write_text(
        textwrap.dedent(f"""\
            #!{sys.executable}
            import os, subprocess
            env = {{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}}
            for args in (["commit", "-q", "--allow-empty", "-m", "busy"], ["push", "-q", "origin", "HEAD:main"]):
                subprocess.run(["git", "-C", {str(theirs)!r}, *args], check=True, env=env)
            """)
    )
    hook.chmod(0o755)
    delta = shard_delta(tmp_path / "one", ["a/Model"], "1/1")
    out = commit(ours, str(delta), "--into", "baselines", "--retries", "2")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.count("push rejected") == 2
    assert "gave up after 2 attempts" in out.stdout
    assert "Refresh" not in git(remote, "log", "--format=%s", "main")
