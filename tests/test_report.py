"""``hfci report``: model coverage from results files and baselines, as people and GitHub read it.

Results and baseline files are written with hfci's own writers; the command runs as a real
subprocess, inside and outside a (simulated, file-backed) GitHub Actions environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfci import baselines, report
from hfci.catalog import load_catalog
from hfci.results import Record, write_results

META = {"fingerprint": "cpu-test-torch0-transformers0", "environment": {"device": "cpu"}, "hfci": "0"}


def rec(case: str, check: str, outcome: str, reason: str = "", device: str = "cpu", **extra) -> Record:
    model_type, _, head = case.partition("/")
    info = load_catalog().records.get(model_type)
    return Record(
        case=case,
        model_type=model_type,
        head=head,
        device=device,
        check=check,
        outcome=outcome,
        duration=0.5,
        reason=reason,
        category=info.category if info else "text",
        tier=info.tier if info else "other",
        **extra,
    )


def sub_config_pair() -> tuple[str, str, str]:
    """A config-only model type, a model type of the same module with a model, and one of its heads."""
    catalog = load_catalog()
    for record in catalog:
        if record.has_model:
            continue
        for parent in catalog:
            if parent.has_model and parent.module == record.module:
                return record.model_type, parent.model_type, parent.heads[0].name
    raise AssertionError("transformers has no config-only sub-config")


RUN = [
    rec("bert/ForMaskedLM", "forward", "passed"),
    rec("bert/ForMaskedLM", "pipeline", "skipped", "pipeline: no offline recipe for fill-mask"),
    rec("bert/ForMultipleChoice", "forward", "failed", "build: ValueError: vocab too small"),
    rec("bert/ForMultipleChoice", "save_load", "failed", "later failure"),
    rec("gpt2/ForCausalLM", "forward", "xfailed", "a known upstream bug"),
    rec("gpt2/ForCausalLM", "generate", "passed"),
    rec("gpt2/Model", "forward", "skipped", "missing optional dependency 'timm'"),
    rec("gpt2/ForTokenClassification", "forward", "xpassed", "was known to fail"),
]


def hfci(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hfci.cli", "report", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def write(tmp_path: Path, records, device: str = "cpu", meta=META) -> Path:
    return write_results(tmp_path, device, records, meta)


# -- the model of the report --------------------------------------------------------------------


def test_case_status_failure_outweighs_all_and_names_its_check():
    status, reason = report.case_status(RUN[2:4])
    assert (status, reason) == ("failed", "forward: build: ValueError: vocab too small")
    assert report.case_status(RUN[4:6]) == ("xfailed", "forward: a known upstream bug")
    # A skipped pipeline beside a passing forward leaves the case passing.
    assert report.case_status(RUN[0:2]) == ("passed", "")
    assert report.case_status(RUN[6:7]) == ("skipped", "forward: missing optional dependency 'timm'")
    assert report.case_status(RUN[7:8]) == ("passed", "")
    assert report.case_status([])[0] == "missing"


def test_a_failure_without_a_message_still_gets_a_reason():
    status, reason = report.case_status([rec("bert/Model", "forward", "failed")])
    assert status == "failed"
    assert reason == "forward: failed; the results file recorded no message"


def test_build_counts_gaps_and_groups(tmp_path):
    report_ = report.build(report.load_sources([write(tmp_path, RUN)]), load_catalog())
    statuses = {(c.case, c.device): c.status for c in report_.cases}
    assert statuses == {
        ("bert/ForMaskedLM", "cpu"): "passed",
        ("bert/ForMultipleChoice", "cpu"): "failed",
        ("gpt2/ForCausalLM", "cpu"): "xfailed",
        ("gpt2/Model", "cpu"): "skipped",
        ("gpt2/ForTokenClassification", "cpu"): "passed",
    }
    total = report_.groups["all"]["all"]
    assert (total["cases"], total["passed"], total["failed"], total["xfailed"], total["skipped"]) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert total["pass_rate"] == 0.4
    assert report_.groups["category"]["text"]["cases"] == 5
    assert set(report_.groups["tier"]) == {load_catalog()["bert"].tier, load_catalog()["gpt2"].tier}
    gaps = [g for g in report_.gaps if g["case"]]
    assert [g["status"] for g in gaps] == ["failed", "xfailed", "skipped"]
    assert all(g["reason"] and "unknown" not in g["reason"] for g in report_.gaps)
    assert report_.skipped_checks == [("pipeline: no offline recipe for fill-mask", 1)]


def test_config_only_sub_configs_are_gaps_with_their_reason(tmp_path):
    child, parent, head = sub_config_pair()
    path = write(tmp_path, [rec(f"{parent}/{head}", "forward", "passed")])
    report_ = report.build(report.load_sources([path]), load_catalog())
    gap = next(g for g in report_.gaps if g["model_type"] == child)
    assert gap["status"] == "config-only"
    assert gap["reason"].startswith("config only: no model class of its own")
    assert parent in gap["reason"]
    assert report_.groups["all"]["all"]["config_only"] >= 1


def test_catalog_scope_lists_heads_without_a_result(tmp_path):
    catalog = load_catalog()
    path = write(tmp_path, [rec("bert/ForMaskedLM", "forward", "passed")])
    report_ = report.build(
        report.load_sources([path]), catalog, scope="catalog", selection=catalog.select(models=["bert"])
    )
    missing = {c.head for c in report_.cases if c.status == "missing"}
    assert missing == {h.name for h in catalog["bert"].heads} - {"ForMaskedLM"}
    assert all(g["reason"].startswith("no result") for g in report_.gaps if g["status"] == "missing")
    md = report.markdown(report_)
    assert "| bert | ForMaskedLM | ✅ |" in md and "no result" in md


def test_baseline_comparison_finds_new_failures_and_fixes(tmp_path):
    old = [rec("bert/ForMaskedLM", "forward", "passed"), rec("gpt2/Model", "forward", "failed", "old")]
    baseline = baselines.merge(None, old, {"device": "cpu"}, "cpu-test-torch0-transformers0")
    base_path = baselines.write(tmp_path / "base" / "cpu-test-torch0-transformers0.json", baseline)
    new = [rec("bert/ForMaskedLM", "forward", "failed", "boom"), rec("gpt2/Model", "forward", "passed")]
    results = write(tmp_path / "run", new)
    for spec in (base_path, base_path.parent):  # a file, or a directory searched by fingerprint
        out = hfci(str(results), "--baseline", str(spec), "--format", "json")
        assert out.returncode == 0, out.stderr
        payload = json.loads(out.stdout)
        assert [(r["case"], r["check"]) for r in payload["new_failures"]] == [("bert/ForMaskedLM", "forward")]
        assert [r["case"] for r in payload["newly_fixed"]] == ["gpt2/Model"]
        assert payload["schema"] == report.SCHEMA
    md = hfci(str(results), "--baseline", str(base_path)).stdout
    assert md.index("New failures against the baseline (1)") < md.index("## By category")


def test_baseline_comparison_reports_lost_coverage_beside_new_failures(tmp_path):
    old = [rec("bert/ForMaskedLM", "forward", "passed"), rec("bert/ForMaskedLM", "pipeline", "passed")]
    baseline = baselines.merge(None, old, {"device": "cpu"}, "cpu-test-torch0-transformers0")
    base_path = baselines.write(tmp_path / "base" / "cpu-test-torch0-transformers0.json", baseline)
    new = [
        rec("bert/ForMaskedLM", "forward", "passed"),
        rec("bert/ForMaskedLM", "pipeline", "skipped", "pipeline: no offline recipe for fill-mask"),
    ]
    results = write(tmp_path / "run", new)
    payload = json.loads(hfci(str(results), "--baseline", str(base_path), "--format", "json").stdout)
    assert payload["new_failures"] == []
    assert [(r["case"], r["check"], r["now"]) for r in payload["lost_coverage"]] == [
        ("bert/ForMaskedLM", "pipeline", "skipped: pipeline: no offline recipe for fill-mask")
    ]
    md = hfci(str(results), "--baseline", str(base_path)).stdout
    assert (
        md.index("## New failures (0)")
        < md.index("## Lost coverage against the baseline")
        < md.index("## By category")
    )


def test_a_baseline_is_a_source_too(tmp_path):
    old = [
        rec("bert/ForMaskedLM", "forward", "passed"),
        rec("bert/ForMaskedLM", "benchmark", "passed", metrics={"perf": {"latency": {"median": 0.002}}}),
        rec("gpt2/Model", "forward", "failed", "old message"),
    ]
    payload = baselines.merge(None, old, {"device": "cpu"}, "cpu-x-torch0")
    path = baselines.write(tmp_path / "cpu-x-torch0.json", payload)
    report_ = report.build(report.load_sources([path]), load_catalog())
    assert report_.sources[0]["kind"] == "baseline"
    failed = next(c for c in report_.cases if c.case == "gpt2/Model")
    assert failed.status == "failed"
    assert "baselines keep outcomes only" in failed.reason
    assert report_.latencies() == {"cpu": [0.002]}


def test_runners_are_an_axis_of_cases_and_of_the_parity_table(tmp_path):
    records = [
        rec("bert/ForMaskedLM", "forward", "passed"),
        rec("bert/ForMaskedLM", "parity", "passed", runner="sdpa"),
        rec("bert/ForMaskedLM", "parity", "failed", "compile differs from eager", runner="compile"),
        rec("gpt2/Model", "parity", "skipped", "sdpa: no sdpa attention", runner="sdpa"),
        rec("vit/Model", "parity", "xfailed", "a known difference", runner="sdpa"),
    ]
    report_ = report.build(report.load_sources([write(tmp_path, records)]), load_catalog())
    bert = next(c for c in report_.cases if c.case == "bert/ForMaskedLM")
    # Two runners' parity checks stay apart, and the failing one is named with its runner.
    assert bert.checks == {"forward": "passed", "parity@compile": "failed", "parity@sdpa": "passed"}
    assert bert.status == "failed" and bert.reason.startswith("parity@compile:")
    sdpa = report_.runners["sdpa"]
    assert (sdpa["all"]["cases"], sdpa["all"]["passed"], sdpa["all"]["skipped"]) == (3, 1, 1)
    assert sdpa["all"]["pass_rate"] == 0.5  # the skip is not held against sdpa
    assert sdpa[load_catalog()["vit"].category]["xfailed"] == 1
    assert report_.runners["compile"]["all"]["pass_rate"] == 0.0
    md = report.markdown(report_)
    assert "## Runner parity against eager" in md
    assert "| sdpa | all | 3 | 1 | 0 | 1 | 1 | 50.0% |" in md

    # A baseline keeps a runner's checks under `case@runner`; read back, the runner is an axis again.
    payload = baselines.merge(None, records, {"device": "cpu"}, "cpu-x-torch0")
    from_baseline = report.build(
        report.load_sources([baselines.write(tmp_path / "cpu-x-torch0.json", payload)]), load_catalog()
    )
    assert {c.case for c in from_baseline.cases} == {r.case for r in records}
    assert from_baseline.runners["sdpa"]["all"]["passed"] == 1


def test_regressions_are_reported(tmp_path):
    verdict = {"kind": "regression", "metric": "latency", "detail": "ratio 1 -> 2 (+100%)"}
    records = [
        rec("bert/Model", "benchmark", "failed", "performance regression", metrics={"verdicts": [verdict]})
    ]
    md = report.markdown(report.build(report.load_sources([write(tmp_path, records)]), load_catalog()))
    assert "## Performance regressions (1)" in md
    assert "ratio 1 -> 2 (+100%)" in md


# -- the command ---------------------------------------------------------------------------------


def test_out_writes_markdown_json_and_chart(tmp_path):
    write(tmp_path / "results", RUN)
    write(tmp_path / "results" / "shard-2", [rec("bert/Model", "forward", "passed", device="cuda")], "cuda")
    out = hfci(str(tmp_path / "results"), "--out", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "![pass rate by category and device; latency per device](report.svg)" in md
    assert "| model type | head | cpu | cuda |" in md
    assert "| bert | ForMultipleChoice | ❌ forward |  |" in md
    svg = (tmp_path / "report" / "report.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and ">cuda<" in svg
    payload = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert payload["devices"] == ["cpu", "cuda"]
    assert payload["totals"]["cases"] == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # The messages of hfci.results' one reader, which the report reads results files with.
        (None, "no such results file or directory"),
        ("{not json", "not a readable JSON file"),
        ('{"schema": "other/1"}', "unknown schema 'other/1'"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema": "hfci-results/1", "records": [{"case": "x"}]}', "malformed record"),
        ('{"schema": "hfci-results/1"}', "without a 'records' list"),
        ('{"schema": "hfci-baseline/1", "cases": []}', "unknown baseline format"),
        (
            '{"schema": "hfci-baseline/1", "cases": {"bert/Model": {"checks": {"forward": "boom"}}}}',
            "malformed",
        ),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "results-cpu.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    out = hfci(str(path))
    assert out.returncode == 2
    assert out.stderr.startswith("hfci: error: ") and message in out.stderr
    assert str(path) in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_an_empty_directory_and_a_missing_baseline_are_errors(tmp_path):
    out = hfci(str(tmp_path))
    assert out.returncode == 2 and "no results-*.json" in out.stderr
    out = hfci(str(write(tmp_path, RUN)), "--baseline", str(tmp_path / "nope.json"))
    assert out.returncode == 2 and "no such baseline" in out.stderr
    out = hfci(str(write(tmp_path, RUN)), "--model", "no-such-model")
    assert out.returncode == 2 and "unknown model" in out.stderr


def test_github_outside_actions_prints_summary_and_annotations(tmp_path):
    out = hfci(str(write(tmp_path, RUN)), "--github", env={"GITHUB_ACTIONS": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# hfci model coverage")
    assert "report.svg` in the `hfci-report` artifact" in out.stdout
    assert "error: bert/ForMultipleChoice [cpu] failed: forward: build: ValueError" in out.stderr


def test_github_in_actions_writes_a_truncated_summary_and_capped_annotations(tmp_path):
    # 4,000 failing cases with long messages: well over GitHub's 1 MiB summary limit.
    records = [
        rec(f"model-{i:04d}/ForCausalLM", "forward", "failed", f"error {i}: " + "x" * 400)
        for i in range(4000)
    ]
    summary = tmp_path / "summary.md"
    summary.touch()
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": ""}
    out = hfci(str(write(tmp_path, records)), "--github", "--out", str(tmp_path / "r"), env=env)
    assert out.returncode == 0, out.stderr
    written = summary.read_bytes()
    assert len(written) < 1024 * 1024
    assert b"**Truncated**" in written
    full = (tmp_path / "r" / "report.md").read_bytes()
    assert len(full) > 1024 * 1024 and b"model-3999" in full
    errors = [line for line in out.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 10
    assert "3991 more error(s) not annotated" in errors[-1]


def test_truncate_keeps_short_text_and_cuts_long_text_at_a_line():
    assert report.truncate("short\n", 100) == "short\n"
    text = "".join(f"line {i}\n" for i in range(1000))
    cut = report.truncate(text, 2000)
    assert len(cut.encode("utf-8")) <= 2000
    assert "**Truncated**" in cut
    head = cut.split("\n\n> **Truncated**")[0]
    assert head.endswith("\n") and text.startswith(head)


def test_real_tiny_run_then_report(tmp_path):
    """A real model run of one case, then the report built from its results file."""
    results = tmp_path / "results"
    from hfci.cli import suite_command

    run = subprocess.run(
        [
            *suite_command(),
            "--model",
            "bert",
            "-k",
            "ForMaskedLM",
            "--device",
            "cpu",
            "--results-dir",
            str(results),
            "--no-baseline-check",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = hfci(str(results), "--format", "json", "--out", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert [s["complete"] for s in payload["sources"]] == [True]
    case = next(c for c in payload["cases"] if c["case"] == "bert/ForMaskedLM")
    assert case["status"] == "passed"
    assert {"forward", "determinism", "save_load", "benchmark"} <= set(case["checks"])
    assert case["latency"] > 0
    svg = (tmp_path / "report" / "report.svg").read_text(encoding="utf-8")
    assert "no benchmark results" not in svg and "cpu (1)" in svg


def test_an_expected_failure_without_a_message_takes_its_models_toml_reason():
    from hfci import data

    model_type, entry = next(
        (m, e["known_failures"][0])
        for m, e in data.load("models").items()
        if e.get("known_failures") and e["known_failures"][0].get("head", "*") == "*"
    )
    status, reason = report.case_status([rec(f"{model_type}/Model", "forward", "xfailed")])
    assert status == "xfailed"
    assert reason == f"forward: {entry['reason']}"


def test_an_empty_results_file_is_a_report_of_nothing(tmp_path):
    out = hfci(str(write(tmp_path, [])), "--format", "json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["cases"] == [] and payload["totals"] == {} and payload["devices"] == ["cpu"]


def test_an_expected_failure_is_matched_against_the_release_its_results_file_ran_with(tmp_path):
    from hfci import data

    installed, old = load_catalog().transformers_version, "0.1"

    def known(case: str, version: str) -> dict | None:
        model_type, _, head = case.partition("/")
        return data.known_failure(model_type, head, "forward", "cpu", "eager", version)

    # A known failure of the installed release that an old release does not have.
    case = next(
        f"{m}/{h.name}"
        for m in data.load("models")
        if m in load_catalog().records
        for h in load_catalog()[m].heads
        if known(f"{m}/{h.name}", installed) and not known(f"{m}/{h.name}", old)
    )
    for version, expected in (
        (installed, known(case, installed)["reason"]),
        (old, "xfailed; the results file recorded no message"),
    ):
        meta = {**META, "environment": {"device": "cpu", "transformers": version}}
        path = write(tmp_path / version, [rec(case, "forward", "xfailed")], meta=meta)
        (result,) = report.build(report.load_sources([path]), load_catalog()).cases
        assert result.reason == f"forward: {expected}", version


def test_the_report_and_the_job_summary_run_without_torch(tmp_path):
    """The aggregate job of models.yml installs hfci without torch."""
    path = str(write(tmp_path, RUN))
    code = f"""
import sys
from hfci import github, report
from hfci.catalog import load_catalog
from hfci.results import read_results
report.markdown(report.build(report.load_sources([{path!r}]), load_catalog()))
github.results_summary(read_results({path!r}))
assert "torch" not in sys.modules, "torch imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_crash_is_its_own_outcome_in_the_report_the_summary_and_the_baseline_diff(tmp_path):
    why = "crashed in parity: killed by signal 11 (SIGSEGV)"
    old = [rec("bert/ForMaskedLM", "forward", "passed")]
    baseline = baselines.merge(None, old, {"device": "cpu"}, "cpu-test-torch0-transformers0")
    base_path = baselines.write(tmp_path / "base" / "cpu-test-torch0-transformers0.json", baseline)
    results = write(tmp_path / "run", [rec("bert/ForMaskedLM", "forward", "crashed", why)])
    payload = json.loads(hfci(str(results), "--baseline", str(base_path), "--format", "json").stdout)
    (case,) = payload["cases"]
    assert case["status"] == "crashed" and why in case["reason"]
    assert [(r["case"], r["reason"]) for r in payload["new_failures"]] == [("bert/ForMaskedLM", why)]
    assert payload["totals"]["crashed"] == 1
    markdown = hfci(str(results)).stdout
    assert "💥" in markdown and "crashed in parity: killed by signal 11 (SIGSEGV)" in markdown
    summary = subprocess.run(
        [sys.executable, "-m", "hfci.github", "summary", str(results)],
        capture_output=True,
        text=True,
        env={**os.environ, "GITHUB_ACTIONS": ""},
    )
    assert summary.returncode == 1
    assert "1 failing checks" in summary.stdout and "SIGSEGV" in summary.stdout


def test_the_report_says_what_the_passes_covered(tmp_path):
    gqa = {"features": ["grouped-query attention", "sliding window"]}
    records = [
        rec("llama/ForCausalLM", "forward", "passed", metrics=gqa),
        rec("llama/ForCausalLM", "training", "passed"),
        rec("llama/ForCausalLM", "cache", "passed"),
        rec("mistral/ForCausalLM", "forward", "passed", metrics=gqa),
        rec("mistral/ForCausalLM", "training", "failed", "boom"),
        rec("bert/ForMaskedLM", "forward", "passed", metrics={"features": []}),
        rec("bert/ForMaskedLM", "padding", "passed"),
        rec("bert/Model", "training", "skipped", "training: no label recipe"),
    ]
    report_ = report.build(report.load_sources([write(tmp_path, records)]), load_catalog())
    assert report_.features == {
        "grouped-query attention": {"cases": 2, "passing": 1},
        "sliding window": {"cases": 2, "passing": 1},
        "a training step": {"cases": 2, "passing": 1},
        "decoding with the cache": {"cases": 1, "passing": 1},
        "padded batches": {"cases": 1, "passing": 1},
    }
    md = report.markdown(report_)
    assert "## What the passes covered" in md
    assert "| grouped-query attention | 2 | 1 |" in md
