"""The measurement protocol and the statistics that judge it."""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfci import bench


def test_mann_whitney_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    a = [rng.gauss(1.1, 0.1) for _ in range(21)]
    b = [rng.gauss(1.0, 0.1) for _ in range(21)]
    ours = bench.mann_whitney_greater(a, b)
    theirs = scipy_stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic").pvalue
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_mann_whitney_extremes():
    assert bench.mann_whitney_greater([2.0] * 10, [1.0] * 10) < 1e-4
    assert bench.mann_whitney_greater([1.0] * 10, [2.0] * 10) > 0.99
    assert bench.mann_whitney_greater([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(0.5, abs=0.2)
    assert bench.mann_whitney_greater([], [1.0]) == 1.0


def test_sig_and_stats_are_stable():
    assert bench.sig(0.000123456) == 0.0001235
    assert bench.sig(1234.567) == 1235.0
    stats = bench.latency_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats == {"median": 3.0, "iqr": 2.0, "n": 5}


def measurement(scale: float, n: int = 21, seed: int = 0) -> bench.Measurement:
    rng = random.Random(seed)
    reference = [1.0 + rng.random() * 0.02 for _ in range(n)]
    samples = [scale * (2.0 + rng.random() * 0.1) for _ in range(n)]
    return bench.Measurement(samples, reference, batch=2, peak_memory=int(1000 * scale))


def stored(scale: float) -> dict:
    return measurement(scale, seed=1).to_dict()


@pytest.mark.parametrize(
    ("scale", "kind"),
    [(1.0, "unchanged"), (1.5, "regression"), (1.1, "unchanged"), (0.6, "improvement")],
)
def test_latency_verdicts(scale, kind):
    assert bench.compare_latency(stored(1.0), measurement(scale), tolerance=0.2).kind == kind


def test_a_clear_but_small_change_is_not_a_regression():
    # Significant (every sample slower) yet inside the tolerance: not flagged.
    verdict = bench.compare_latency(stored(1.0), measurement(1.15), tolerance=0.2)
    assert verdict.kind == "unchanged"
    assert "+" in verdict.detail


def test_the_seen_range_moves_the_bar_for_cases_whose_speed_settles_per_process():
    base = stored(1.0)
    assert bench.seen_range(base) == (base["ratio"], base["ratio"])
    assert bench.widened(base, base["ratio"]) is None
    wide = {**base, "ratio_range": bench.widened(base, base["ratio"] * 1.6)}
    assert bench.seen_range(wide) == pytest.approx((base["ratio"], base["ratio"] * 1.6), rel=1e-3)
    assert bench.widened(wide, base["ratio"] * 1.3) is None  # inside: nothing to write
    assert bench.widened(wide, base["ratio"] * 1.7) is None  # within the margin: jitter
    assert bench.widened(wide, base["ratio"] * 0.95) is None
    # 1.5x the point, yet inside 1.2x the range's top: a mode seen before, not a regression.
    assert bench.compare_latency(wide, measurement(1.5), tolerance=0.2).kind == "unchanged"
    verdict = bench.compare_latency(wide, measurement(2.2), tolerance=0.2)
    assert verdict.kind == "regression" and "seen" in verdict.detail
    # Below the range's bottom is an improvement, measured from the bottom.
    assert bench.compare_latency(wide, measurement(0.6), tolerance=0.2).kind == "improvement"
    assert bench.compare_latency(wide, measurement(0.9), tolerance=0.2).kind == "unchanged"


def test_memory_has_its_own_tolerance():
    assert bench.compare_memory(stored(1.0), measurement(1.04), tolerance=0.05).kind == "unchanged"
    assert bench.compare_memory(stored(1.0), measurement(1.2), tolerance=0.05).kind == "regression"
    assert bench.compare_memory(stored(1.0), measurement(0.5), tolerance=0.05).kind == "improvement"
    assert bench.compare_memory({}, measurement(1.0), tolerance=0.05).kind == "unchanged"


def test_slowdown_hook_parses():
    assert bench.slowdowns("bert/ForMaskedLM=1.5, gpt2/Model=2:4") == {
        "bert/ForMaskedLM": (1.5, None),
        "gpt2/Model": (2.0, 4),
    }
    assert bench.slowdowns("") == {}


def test_measure_on_cpu_sees_torch_allocations(monkeypatch):
    torch = pytest.importorskip("torch")

    def forward():
        return torch.ones(512, 512).sum()

    m = bench.measure(forward, "cpu", batch=1, case="x/Model", repeats=5, warmup=1)
    assert len(m.samples) == len(m.reference) == 5
    assert m.ratio > 0 and m.throughput > 0
    # 512 x 512 float32 is 1 MiB: the profiler-based peak sees it; tracemalloc would see nothing.
    assert m.peak_memory >= 512 * 512 * 4
    record = m.to_dict()
    assert record["latency"]["n"] == 5 and len(record["samples"]) == 5
    assert record["protocol"] == bench.PROTOCOL and bench.comparable(record)
    assert not bench.comparable({k: v for k, v in record.items() if k != "protocol"})
    assert not bench.comparable(None)


def test_a_measurement_whose_reference_ran_slow_counts_as_disturbed():
    usual = [300e-6, 310e-6, 320e-6, 2000e-6, 305e-6]  # one disturbed run does not move the usual
    assert not bench.disturbed(0.95 * bench.DISTURBED * 310e-6, usual)
    assert bench.disturbed(1.05 * bench.DISTURBED * 310e-6, usual)
    assert not bench.disturbed(1.0, [])


def test_a_baseline_entry_measured_on_a_busy_machine_is_no_evidence():
    base = stored(1.0)  # its reference median is about 1.0
    usual = bench.usual_reference([base, stored(1.0), {"ratio": 1.0}])
    assert usual == pytest.approx(base["reference"]["median"])
    # Measured 2.5x slower than the baseline's usual reference: neither regression nor improvement.
    verdict = bench.compare_latency(base, measurement(1.5), tolerance=0.2, usual=usual / 2.5)
    assert verdict.kind == "disturbed" and "busy machine" in verdict.detail
    assert bench.compare_latency(base, measurement(1.5), tolerance=0.2, usual=usual).kind == "regression"
    assert bench.usual_reference([]) is None


def test_measure_keeps_the_usual_reference_of_its_process():
    torch = pytest.importorskip("torch")
    x = torch.randn(32, 32)
    bench.measure(lambda: x @ x, "cpu", 1, "a/Model", repeats=5, warmup=1)
    before = len(bench._REFERENCE_MEDIANS["cpu"])
    assert before >= 6  # five calibration medians, then one per measurement
    again = bench.measure(lambda: x @ x, "cpu", 1, "a/Model", repeats=5, warmup=1)
    assert len(bench._REFERENCE_MEDIANS["cpu"]) == before + 1
    assert 0 <= again.extra["retakes"] <= bench.RETAKES and again.extra["disturbed"] in (True, False)


def test_a_measurement_disturbed_through_its_retakes_says_so_and_teaches_no_range(monkeypatch):
    torch = pytest.importorskip("torch")
    x = torch.randn(32, 32)
    # A process whose usual reference is far faster than any real run: every take is disturbed.
    monkeypatch.setitem(bench._REFERENCE_MEDIANS, "cpu", [1e-9] * 5)
    busy = bench.measure(lambda: x @ x, "cpu", 1, "a/Model", repeats=5, warmup=1)
    assert busy.extra == {"retakes": bench.RETAKES, "disturbed": True}
    base = stored(1.0)
    slower = measurement(1.15)  # unchanged, but beyond the seen range
    assert bench.outcome(base, slower, bench.compare_latency(base, slower, 0.2), 0.05)["ratio_range"]
    slower.extra["disturbed"] = True
    assert bench.outcome(base, slower, bench.compare_latency(base, slower, 0.2), 0.05)["ratio_range"] is None


def test_a_cpu_profile_that_records_no_allocation_gives_no_figure():
    torch = pytest.importorskip("torch")
    x = torch.ones(8)
    assert bench.peak_memory(lambda: x, "cpu") is None  # allocates nothing
    assert bench.peak_memory(lambda: x + 1, "cpu") > 0


def test_a_forward_that_samples_measures_the_same_draw_whatever_ran_before():
    torch = pytest.importorskip("torch")

    def forward():  # allocates as much as it draws, as VITS' sampled durations do
        return torch.ones(int(torch.randint(1, 4096, (1,))) * 1024)

    peaks = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        peaks.append(bench.measure(forward, "cpu", 1, "r/Model", repeats=3, warmup=1).peak_memory)
        assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is kept
    assert peaks[0] == peaks[1]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_allocator_thresholds_are_fixed_on_glibc():
    assert bench.steady_allocator() is True


def test_the_slowdown_hook_slows_only_its_case(monkeypatch):
    torch = pytest.importorskip("torch")
    x = torch.randn(64, 64)

    def forward():
        return x @ x

    # 5x against a bar of 1.5x: a burst of the shared host slows a take by up to 2.7x.
    monkeypatch.setenv(bench.SLOWDOWN_ENV, "slow/Model=5,burst/Model=5:1")
    slow = bench.measure(forward, "cpu", 1, "slow/Model", repeats=7, warmup=1)
    plain = bench.measure(forward, "cpu", 1, "plain/Model", repeats=7, warmup=1)
    assert statistics.median(slow.samples) > 1.5 * statistics.median(plain.samples)
    burst = bench.measure(forward, "cpu", 1, "burst/Model", repeats=7, warmup=1)
    after = bench.measure(forward, "cpu", 1, "burst/Model", repeats=7, warmup=1)
    assert statistics.median(burst.samples) > 1.5 * statistics.median(after.samples)


def test_the_slowdown_hook_takes_patterns():
    assert bench.slowdown_for("bert/Model", "*=1.5") == (1.5, None)
    assert bench.slowdown_for("bert/Model", "gpt2/*=2,bert/Model=3") == (3.0, None)  # its own entry first
    assert bench.slowdown_for("gpt2/Model", "gpt2/*=2,bert/Model=3") == (2.0, None)
    assert bench.slowdown_for("vit/Model", "gpt2/*=2") == (1.0, None)


def test_a_median_is_tight_when_its_confidence_interval_is_narrow():
    refs = [1.0] * 9
    assert bench._tight([2.0, 2.01, 1.99, 2.0, 2.02, 1.98, 2.0, 2.01, 1.99], refs)
    # The same centre, but the middle order statistics 30 % apart: not tight.
    assert not bench._tight([2.0, 2.6, 1.4, 2.0, 2.5, 1.5, 2.0, 2.4, 1.6], refs)
    assert not bench._tight([2.0, 2.6, 1.4, 2.0, 2.5, 1.5, 2.0, 2.4, 1.6], refs, precision=0.01)
    assert bench._tight([2.0, 2.6, 1.4, 2.0, 2.5, 1.5, 2.0, 2.4, 1.6], refs, precision=0.5)


def test_a_take_fits_its_budget_between_the_least_and_the_most_samples():
    pytest.importorskip("torch")

    def slow():
        time.sleep(0.02)

    # A 20 ms forward against a 0.1 s budget stops soon after five pairs; never under the least.
    sized = bench.measure(slow, "cpu", 1, "slow/Model", repeats=21, warmup=5, min_repeats=3, budget=0.1)
    assert 3 <= len(sized.samples) <= 6
    assert len(bench.measure(slow, "cpu", 1, "slow/Model", min_repeats=4, budget=0.0).samples) == 4
    # The most is a cap even when the budget and the precision would go on.
    capped = bench.measure(slow, "cpu", 1, "slow/Model", repeats=5, min_repeats=9, budget=60.0)
    assert len(capped.samples) == 5


_SIBLING = """
import json, os, sys, time
from hfci import bench
if os.environ["ROLE"] == "idle":
    while True:
        time.sleep(0.01)
time.sleep(0.5)  # the idle sibling is up
with bench.machine_to_itself(os.environ["LOCK"]) as stopped:
    inside = {pid: bench._stopped(pid) for pid in stopped}
time.sleep(0.05)
print(json.dumps({"stopped": stopped, "inside": inside, "after": {p: bench._stopped(p) for p in stopped}}))
"""

_PARENT = """
import os, subprocess, sys
code = sys.argv[1]
idle = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "ROLE": "idle"})
other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # not a worker
try:
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ROLE": "measure"},
                         capture_output=True, text=True, timeout=60)
    print(out.stdout, out.stderr, idle.pid, other.pid)
finally:
    idle.kill(); other.kill()
"""


@pytest.mark.skipif(not bench.can_freeze(), reason="stopping processes needs /proc and SIGSTOP")
def test_a_measurement_stops_its_sibling_workers_and_continues_them(tmp_path):
    import json
    import subprocess
    import sys

    env = {**os.environ, "LOCK": str(tmp_path / "machine.lock")}
    run = subprocess.run(
        [sys.executable, "-c", _PARENT, _SIBLING], capture_output=True, text=True, timeout=90, env=env
    )
    *report, idle, other = run.stdout.split()
    found = json.loads(" ".join(report))
    # The sibling started as the measurer was is stopped for the block, and only for it; the
    # parent's other child (another command line) is left alone.
    assert found["stopped"] == [int(idle)]
    assert found["inside"] == {idle: True}
    assert found["after"] == {idle: False}
    assert int(other) not in found["stopped"]
    # The window is logged for the stopped worker, whose check durations leave it out.
    (line,) = (tmp_path / "machine.lock.stopped").read_text().splitlines()
    pid, since, until = line.split()
    assert int(pid) not in (int(idle), int(other)) and 0 < float(until) - float(since) < 5


@pytest.mark.skipif(not bench.can_freeze(), reason="stopping processes needs /proc and SIGSTOP")
def test_thaw_continues_a_stopped_process():
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        for _ in range(100):
            if bench._stopped(child.pid):
                break
            time.sleep(0.01)
        assert bench._stopped(child.pid)
        assert child.pid in bench.descendants(os.getpid())
        bench.thaw([child.pid])
        for _ in range(100):
            if not bench._stopped(child.pid):
                break
            time.sleep(0.01)
        assert not bench._stopped(child.pid)
    finally:
        child.kill()


def test_with_a_stored_reference_the_canary_is_the_case_own(monkeypatch):
    torch = pytest.importorskip("torch")
    x = torch.randn(32, 32)
    monkeypatch.setitem(bench._DRIFTS, "cpu", [])
    # A quiet process whose usual is tiny does not matter: the case's stored reference does.
    monkeypatch.setitem(bench._REFERENCE_MEDIANS, "cpu", [1e-9] * 5)
    calm = bench.measure(lambda: x @ x, "cpu", 1, "a/Model", repeats=5, expected_reference=1.0)
    assert (calm.extra["retakes"], calm.extra["disturbed"], calm.extra["usual_drift"]) == (0, False, 1.0)
    # The same case's reference now runs far slower than when the baseline was taken: busy.
    busy = bench.measure(lambda: x @ x, "cpu", 1, "a/Model", repeats=5, expected_reference=1e-9)
    assert (busy.extra["retakes"], busy.extra["disturbed"]) == (bench.RETAKES, True)
    # Once five drifts are known, their median is the machine's usual against the baseline: a
    # host that runs every reference about 1e5-1e6x its baseline's (a reference of 0.1-1 ms
    # here) is simply slower, not busy.
    monkeypatch.setitem(bench._DRIFTS, "cpu", [1e6] * 5)
    slower_host = bench.measure(lambda: x @ x, "cpu", 1, "a/Model", repeats=5, expected_reference=1e-9)
    assert (slower_host.extra["retakes"], slower_host.extra["disturbed"]) == (0, False)


def test_a_stored_reference_far_slower_than_the_run_says_it_should_be_was_taken_busy():
    base = stored(1.0)
    slower = measurement(1.5)
    # This run's reference for the case is 0.4x the stored one, where the run's usual drift is 1:
    # the stored one ran on a busy machine.
    slower.extra |= {"drift": 0.4, "usual_drift": 1.0}
    verdict = bench.compare_latency(base, slower, tolerance=0.2)
    assert verdict.kind == "disturbed" and "2.5x its usual" in verdict.detail
    slower.extra |= {"drift": 0.6, "usual_drift": 1.0}  # the machine's own drift, not a busy one
    assert bench.compare_latency(base, slower, tolerance=0.2).kind == "regression"


def test_a_worker_leaves_out_the_time_others_stopped_it_but_not_its_own_measurements(tmp_path):
    log = tmp_path / "machine.lock.stopped"
    stopped = bench.StoppedTime(str(log))
    assert stopped.within(0.0, 100.0) == 0.0  # no log yet
    log.write_text(f"1 10.0 12.0\n{os.getpid()} 20.0 25.0\n1 30.0 31.0\n1 40.0")
    assert stopped.within(0.0, 100.0) == pytest.approx(3.0)  # its own window and a partial line: out
    assert stopped.within(11.0, 30.5) == pytest.approx(1.5)
    with log.open("a") as handle:
        handle.write(" 44.0\n")  # the partial line, completed
    assert stopped.within(41.0, 50.0) == pytest.approx(3.0)
    assert bench.StoppedTime(None).within(0.0, 1.0) == 0.0


def test_pooled_takes_keep_every_sample_and_the_majority_verdict_on_disturbance():
    a, b, c = measurement(1.0, n=9), measurement(1.0, n=11, seed=1), measurement(1.0, n=21, seed=2)
    a.extra = {"retakes": 1, "disturbed": True, "drift": 1.0, "usual_drift": 1.0}
    b.extra = {"retakes": 0, "disturbed": False, "drift": 2.0, "usual_drift": 1.0}
    c.extra = {"retakes": 0, "disturbed": True, "drift": 3.0, "usual_drift": 1.1}
    both = bench.pooled([a, b, c])
    assert both.samples == a.samples + b.samples + c.samples and len(both.reference) == 41
    assert both.extra == {"retakes": 1, "disturbed": True, "takes": 3, "drift": 2.0, "usual_drift": 1.1}
    assert bench.pooled([a, b]).extra["disturbed"] is False  # one of two is no majority


def test_a_suspect_is_judged_on_all_its_takes_together(monkeypatch):
    from types import SimpleNamespace

    from hfci.pytest.measuring import measured

    torch = pytest.importorskip("torch")
    case = SimpleNamespace(
        model=torch.nn.Linear(256, 256), inputs={"input": torch.randn(8, 256)}, device="cpu"
    )
    stored = measured(case, "pool/Stored", None, None, 1.0)[0].to_dict()
    # A 2x tolerance: the tiny forward's own noise between takes stays inside it, and so does a
    # shared host's (its bursts move a ratio by up to 1.6x between takes); 6x clears it. Three
    # of the four takes slowed: each take on its own would not all agree, together they do.
    monkeypatch.setenv(bench.SLOWDOWN_ENV, "pool/Model=6:3")
    slowed, verdict = measured(case, "pool/Model", stored, None, 1.0)
    assert verdict.kind == "regression" and slowed.extra["takes"] == 4
    assert len(slowed.samples) >= 4 * bench.MIN_REPEATS
    # One slowed take of four is outvoted.
    monkeypatch.setenv(bench.SLOWDOWN_ENV, "pool/Once=6:1")
    once, verdict = measured(case, "pool/Once", stored, None, 1.0)
    assert verdict.kind != "regression" and once.extra["takes"] == 4


def test_the_noise_probe_counts_the_windows_a_burst_slowed_and_its_longest_stretch():
    calm = bench.Noise(0.5, (1.0e-4, 1.02e-4, 1.01e-4, 1.1e-4))
    assert calm.share == 0 and calm.longest == 0 and "0% of 4 windows" in calm.summary()
    bursty = bench.Noise(0.5, (1.0e-4, 2.0e-4, 1.8e-4, 1.0e-4, 1.3e-4, 1.01e-4))
    assert bursty.noisy == [False, True, True, False, True, False]
    assert bursty.share == 0.5 and bursty.longest == 1.0
    assert (
        "100 µs at its quietest; 50% of 6 windows" in bursty.summary()
        and "(median 1.80x)" in bursty.summary()
    )


def test_the_noise_probe_times_the_reference_for_as_long_as_asked():
    pytest.importorskip("torch")
    start = time.perf_counter()
    probe = bench.noise(0.3, window=0.1)
    assert 0.3 <= time.perf_counter() - start < 2.0
    assert len(probe.medians) >= 3 and probe.quiet > 0 and 0 <= probe.share <= 1


def test_ci_bench_noise_prints_the_probe_and_refuses_a_bad_duration():
    pytest.importorskip("torch")
    script = str(Path(__file__).resolve().parents[1] / "ci" / "bench_noise.py")
    out = subprocess.run([sys.executable, script, "0.2", "--window", "0.1"], capture_output=True, text=True)
    assert out.returncode == 0 and "at its quietest" in out.stdout and "windows of 0.1 s" in out.stdout
    bad = subprocess.run([sys.executable, script, "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "must be positive, not -1" in bad.stderr
