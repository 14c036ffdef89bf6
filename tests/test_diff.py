"""``hfci diff``: two runs compared, case by case, as an upgrade is judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hfci import diff, report
from hfci.results import write_results
from test_report import rec

PERF = {
    "samples": [5.0, 5.1, 4.9, 5.0, 5.2, 4.8, 5.0, 5.1, 4.9],
    "ratio": 5.0,
    "protocol": 3,
    "peak_memory": 1000,
}
SLOWER = {**PERF, "samples": [s * 1.6 for s in PERF["samples"]], "ratio": 8.0, "peak_memory": 1500}


def side(tmp_path: Path, name: str, records, version: str) -> Path:
    meta = {"fingerprint": "cpu-test", "environment": {"device": "cpu", "transformers": version}, "hfci": "0"}
    return write_results(tmp_path / name, "cpu", records, meta)


OLD = [
    rec("bert/ForMaskedLM", "forward", "passed"),
    rec("bert/ForMaskedLM", "pipeline", "passed"),
    rec("gpt2/LMHeadModel", "forward", "passed"),
    rec("gpt2/LMHeadModel", "benchmark", "passed", metrics={"perf": PERF}),
    rec("t5/Model", "forward", "failed", "ValueError: boom"),
    rec("opt/Model", "forward", "passed"),
    rec("llama/Model", "forward", "xfailed", "a known bug"),
    rec(
        "xlstm/Model", "pipeline", "xfailed", "an entry scoped to <5.24", raised="RuntimeError: expanded size"
    ),
]
NEW = [
    rec("bert/ForMaskedLM", "forward", "passed"),
    rec("bert/ForMaskedLM", "pipeline", "skipped", "missing optional dependency 'PIL'"),
    rec(
        "gpt2/LMHeadModel",
        "forward",
        "failed",
        "TypeError: at transformers/models/gpt2/modeling_gpt2.py:412 (forward)",
    ),
    rec("gpt2/LMHeadModel", "benchmark", "passed", metrics={"perf": SLOWER}),
    rec("t5/Model", "forward", "passed"),
    rec("bert/ForQuestionAnswering", "forward", "passed"),
    rec("mistral/Model", "forward", "failed", "RuntimeError: new"),
    rec("llama/Model", "forward", "failed", "AttributeError: another failure"),
    rec("xlstm/Model", "pipeline", "failed", "RuntimeError: expanded size"),
]


def test_each_case_is_classified_as_an_upgrade_reads_it(tmp_path):
    old, new = side(tmp_path, "old", OLD, "5.23.0"), side(tmp_path, "new", NEW, "5.24.0")
    found = diff.build(report.load_sources([old]), report.load_sources([new]))
    kinds = {(c.case, c.change) for c in found.cases}
    assert kinds == {
        ("gpt2/LMHeadModel", "new failure"),
        ("llama/Model", "new failure"),  # a known failure failing otherwise is not the one expected
        ("bert/ForMaskedLM", "lost coverage"),
        ("mistral/Model", "new architecture"),
        ("bert/ForQuestionAnswering", "new head"),
        ("opt/Model", "removed"),
        ("t5/Model", "fixed"),
        ("xlstm/Model", "entry out of range"),
    }
    gpt2 = next(c for c in found.cases if c.case == "gpt2/LMHeadModel")
    assert (gpt2.old, gpt2.new, gpt2.where) == (
        "passed",
        "failed",
        "transformers/models/gpt2/modeling_gpt2.py:412",
    )
    lost = next(c for c in found.cases if c.change == "lost coverage")
    assert lost.checks == ["pipeline"] and "PIL" in lost.reason
    assert found.model_types == {"added": ["mistral"], "removed": ["opt"]}
    assert (found.old["transformers"], found.new["transformers"]) == ("5.23.0", "5.24.0")
    # The cases listed first are those that need a person.
    assert [c.change for c in found.cases][:2] == ["new failure", "new failure"]
    perf = {(p["case"], p["metric"], p["kind"]) for p in found.performance}
    assert perf == {
        ("gpt2/LMHeadModel", "latency", "regression"),
        ("gpt2/LMHeadModel", "memory", "regression"),
    }


def test_noise_within_the_tolerance_is_no_performance_change(tmp_path):
    jitter = {**PERF, "samples": [s * 1.05 for s in PERF["samples"]], "ratio": 5.25}
    old = side(
        tmp_path, "old", [rec("gpt2/LMHeadModel", "benchmark", "passed", metrics={"perf": PERF})], "5.23.0"
    )
    new = side(
        tmp_path, "new", [rec("gpt2/LMHeadModel", "benchmark", "passed", metrics={"perf": jitter})], "5.24.0"
    )
    assert diff.build(report.load_sources([old]), report.load_sources([new])).performance == []


def run_diff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hfci.cli", "diff", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_hfci_diff_prints_markdown_and_json_and_fails_on_a_new_failure(tmp_path):
    old, new = side(tmp_path, "old", OLD, "5.23.0"), side(tmp_path, "new", NEW, "5.24.0")
    done = run_diff(str(old), str(new))
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("# hfci diff: transformers 5.23.0 → 5.24.0")
    assert (
        "2 new failure, 1 entry out of range, 1 lost coverage, 1 new architecture, 1 new head, 1 removed"
        in done.stdout
    )
    assert done.stdout.index("## New failure (2)") < done.stdout.index("## Fixed (1)")
    payload = json.loads(run_diff(str(old.parent), str(new.parent), "--format", "json").stdout)
    assert payload["schema"] == diff.SCHEMA and payload["counts"]["new failure"] == 2
    same = run_diff(str(old), str(old))
    assert same.returncode == 0 and "0 new failure" in same.stdout


def test_a_missing_or_corrupt_side_is_one_clear_error(tmp_path):
    old = side(tmp_path, "old", OLD, "5.23.0")
    done = run_diff(str(old), str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "no such results file or directory" in done.stderr and not done.stdout
    bad = tmp_path / "results-cpu.json"
    bad.write_text("{not json")
    done = run_diff(str(bad), str(old))
    assert done.returncode == 2 and "not a readable JSON file" in done.stderr


def test_a_selected_run_is_compared_on_its_own_cases(tmp_path):
    old, new = side(tmp_path, "old", OLD, "5.23.0"), side(tmp_path, "new", NEW[:2], "5.24.0")
    found = diff.build(report.load_sources([old]), report.load_sources([new]), selected=True)
    assert [(c.case, c.change) for c in found.cases] == [("bert/ForMaskedLM", "lost coverage")]
    assert found.model_types == {"added": [], "removed": []}
    everything = diff.build(report.load_sources([old]), report.load_sources([new]))
    assert {c.case for c in everything.cases if c.change == "removed"} == {
        "gpt2/LMHeadModel",
        "t5/Model",
        "opt/Model",
        "llama/Model",
        "xlstm/Model",
    }


def test_nox_upgrade_asks_for_the_release(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "nox", "-s", "upgrade", "--no-venv"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode != 0
    assert "name the candidate release: nox -s upgrade -- 5.24.0" in done.stderr


def test_an_expected_failure_s_where_comes_from_what_it_raised():
    from dataclasses import replace

    line = "transformers/models/llama4/modeling_llama4.py:1318"
    xfailed = rec("llama4/ForConditionalGeneration", "forward", "xfailed", "transformers bug")
    located = replace(xfailed, raised=f"AttributeError: no image_outputs (at {line})")
    change = diff.classify(None, [located], {"llama4"})
    assert (change.change, change.new, change.where) == ("new head", "xfailed", line)
    # Without a line anywhere, no where.
    bare = replace(xfailed, raised="AttributeError: no image_outputs")
    assert diff.classify(None, [bare], {"llama4"}).where == ""
