"""The mutation test: each planted-bug runner of planted_runners.py over the critical tier.

Run the way a backend maintainer runs theirs: named in a project's [tool.hfci.runners] and
checked with ``--runner``, over every head of the critical tier. Each bug must fail parity on at
least 95 % of the cases it applies to (those its runner does not skip).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import planted_runners

CAUGHT_AT_LEAST = 0.95


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, collections.Counter]:
    root = tmp_path_factory.mktemp("backend")
    table = "\n".join(f'{name} = "planted_runners:{name}"' for name in planted_runners.PLANTED)
    (root / "pyproject.toml").write_text(f'[project]\nname = "backend"\n\n[tool.hfci.runners]\n{table}\n')
    command = [sys.executable, "-m", "hfci.cli", "run", "--tier", "critical", "--device", "cpu"]
    # eager too: its training check says where a training bug applies.
    command += [arg for name in ("eager", *planted_runners.PLANTED) for arg in ("--runner", name)]
    # One worker: the framework suite runs beside it under xdist, and its timing tests
    # (test_baselines) must not find the two cores both taken by this run.
    command += ["--results-dir", str(root / "results"), "--no-benchmark", "--workers", "1"]
    command += ["-k", "parity or training"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
    records = json.loads((root / "results" / "results-cpu.json").read_text())["records"]
    assert records, done.stdout[-3000:] + done.stderr[-2000:]
    # A training bug applies only where eager trains: elsewhere its runner's parity has nothing
    # of training to compare, and a pass there is no miss.
    trains = {r["case"] for r in records if r["check"] == "training" and r["outcome"] == "passed"}
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for record in records:
        if record["check"] != "parity":
            continue
        if record["runner"] in planted_runners.TRAINING and record["case"] not in trains:
            counts[record["runner"]]["skipped"] += 1
        else:
            counts[record["runner"]][record["outcome"]] += 1
    print("\nplanted bug: caught / applies (skipped where it cannot apply)")
    for name in planted_runners.PLANTED:
        c = counts[name]
        print(f"  {name:18} {c['failed']:3} / {c['failed'] + c['passed']:3}  ({c['skipped']} skipped)")
    return counts


@pytest.mark.parametrize("name", planted_runners.PLANTED)
def test_a_planted_bug_fails_parity_where_it_applies(
    verdicts: dict[str, collections.Counter], name: str
) -> None:
    counts = verdicts[name]
    applies = counts["failed"] + counts["passed"]
    assert applies >= 5, f"{name} applied to {applies} cases: the test would prove nothing"
    assert counts["crashed"] == 0
    assert counts["failed"] / applies >= CAUGHT_AT_LEAST, f"{name}: caught {counts['failed']} of {applies}"
