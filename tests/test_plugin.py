"""The pytest plugin, driven through real pytest runs of the shipped model suite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def pytest_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "--pyargs", "hfci.pytest.suite", "-p", "no:cacheprovider"]
    command += ["--results-dir", str(tmp_path), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)


def test_ids_keep_hyphens_and_model_tests_are_gated(tmp_path):
    out = pytest_run(tmp_path, "--collect-only", "-q", "--model", "xlm-roberta", "--device", "cpu")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test_forward[xlm-roberta/ForMaskedLM-cpu]" in out.stdout
    ran = pytest_run(tmp_path, "-q", "--model", "xlm-roberta", "-k", "ForMaskedLM and forward")
    assert "1 skipped" in ran.stdout
    assert not (tmp_path / "results-cpu.json").exists()


def test_no_benchmark_leaves_only_the_correctness_checks(tmp_path):
    def collected(*args: str) -> list[str]:
        out = pytest_run(tmp_path, "--collect-only", "-q", "--model", "bert", "--one-head", *args)
        assert out.returncode == 0, out.stdout + out.stderr
        return [line.split("::")[-1].split("[")[0] for line in out.stdout.splitlines() if "::" in line]

    assert "test_benchmark" in collected()
    checks = collected("--no-benchmark")
    assert "test_benchmark" not in checks and {"test_forward", "test_save_load"} <= set(checks)


def test_markers_select_by_category(tmp_path):
    out = pytest_run(tmp_path, "--collect-only", "-q", "--tier", "critical", "-m", "vision")
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids and all(any(f"[{m}/" in i for m in ("vit", "swin", "clip")) for i in ids)


def test_bad_selection_is_a_usage_error(tmp_path):
    for args, message in (
        (("--category", "visoin"), "unknown category 'visoin'"),
        (("--device", "tpu"), "tpu"),
        (("--shard", "9/8"), "bad shard '9/8'"),
    ):
        out = pytest_run(tmp_path, "--collect-only", *args)
        assert out.returncode == 4
        assert message in out.stderr


def test_a_real_run_writes_results(tmp_path):
    out = pytest_run(tmp_path, "--run-model-tests", "--model", "bert", "-k", "ForMaskedLM", "--device", "cpu")
    assert out.returncode == 0, out.stdout[-3000:]
    assert "hfci model summary" in out.stdout
    payload = json.loads((tmp_path / "results-cpu.json").read_text())
    assert payload["schema"] == "hfci-results/1"
    checks = {r["check"]: r["outcome"] for r in payload["records"] if r["case"] == "bert/ForMaskedLM"}
    assert checks == {
        "forward": "passed",
        "determinism": "passed",
        "save_load": "passed",
        "padding": "passed",
        "benchmark": "passed",
        "training": "passed",
        "pipeline": "passed",
    }
    perf = next(r["metrics"]["perf"] for r in payload["records"] if r["check"] == "benchmark")
    assert perf["latency"]["n"] == len(perf["samples"]) > 10
    assert perf["peak_memory"] > 0
    assert all(r["duration"] > 0 for r in payload["records"])


def test_a_killed_run_leaves_the_checks_it_finished_marked_partial(tmp_path):
    # A CI job killed at its timeout-minutes gets no terminal summary; the partial writes are all
    # that is left to upload.
    command = [sys.executable, "-m", "pytest", "--pyargs", "hfci.pytest.suite", "-p", "no:cacheprovider"]
    command += ["--results-dir", str(tmp_path), "--run-model-tests", "--model", "bert", "--device", "cpu"]
    command += ["-n", "1", "--results-every", "0", "--no-baseline-check"]
    run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, start_new_session=True)
    results = tmp_path / "results-cpu.json"
    try:
        deadline = time.monotonic() + 300
        while not results.exists() or len(json.loads(results.read_text())["records"]) < 3:
            assert run.poll() is None, "the run ended before its third check"
            assert time.monotonic() < deadline, "no partial results within 300 s"
            time.sleep(0.1)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    payload = json.loads(results.read_text())
    assert payload["complete"] is False
    assert payload["fingerprint"].startswith("cpu-")
    assert 3 <= len(payload["records"]) < 9 * 5, "bert has 9 heads of at least 5 checks each"
    report = subprocess.run(
        [sys.executable, "-m", "hfci.cli", "report", str(results), "--model", "bert"],
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    assert "**partial**: its run stopped before the end" in report.stdout


def test_a_known_failure_marked_not_to_run_is_reported_without_running(tmp_path):
    # funnel/ForMultipleChoice compiles past the timeout; models.toml says run = false.
    args = ("--run-model-tests", "--model", "funnel", "--device", "cpu", "--runner", "compile")
    out = pytest_run(tmp_path, *args, "-k", "ForMultipleChoice and parity")
    assert out.returncode == 0, out.stdout[-3000:]
    payload = json.loads((tmp_path / "results-cpu.json").read_text())
    (record,) = [r for r in payload["records"] if r["check"] == "parity"]
    assert record["outcome"] == "xfailed" and "NOTRUN" in record["reason"]
    assert record["duration"] < 5


def test_one_head_keeps_one_case_per_model_type(tmp_path):
    def collected(*args: str) -> set[str]:
        out = pytest_run(tmp_path, "--collect-only", "-q", "--device", "cpu", "-k", "forward", *args)
        assert out.returncode == 0, out.stdout + out.stderr
        return {line.split("[", 1)[1] for line in out.stdout.splitlines() if "::" in line}

    # Neither bert-generation nor internlm3 (which borrows Llama's classes) has a bare Model head.
    models = ("--model", "bert", "--model", "bert-generation", "--model", "internlm3")
    every_head = collected(*models)
    one = collected(*models, "--one-head")
    assert one == {"bert/Model-cpu]", "bert-generation/Decoder-cpu]", "internlm3/LlamaModel-cpu]"}
    assert one < every_head


def test_shards_partition_the_selection(tmp_path):
    def collected(*args: str) -> set[str]:
        out = pytest_run(tmp_path, "--collect-only", "-q", "--tier", "critical", "--device", "cpu", *args)
        return {line for line in out.stdout.splitlines() if "::" in line}

    everything = collected()
    parts = [collected("--shard", f"{i}/3") for i in (1, 2, 3)]
    assert set().union(*parts) == everything
    assert sum(len(p) for p in parts) == len(everything)
