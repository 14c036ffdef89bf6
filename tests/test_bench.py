"""The measurement protocol and the statistics that judge it."""

from __future__ import annotations

import platform
import random
import statistics

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
    assert not bench.disturbed(370e-6, usual)
    assert bench.disturbed(400e-6, usual)
    assert not bench.disturbed(1.0, [])


def test_a_baseline_entry_measured_on_a_busy_machine_is_no_evidence():
    base = stored(1.0)  # its reference median is about 1.0
    usual = bench.usual_reference([base, stored(1.0), {"ratio": 1.0}])
    assert usual == pytest.approx(base["reference"]["median"])
    # Measured 1.5x slower than the baseline's usual reference: neither regression nor improvement.
    verdict = bench.compare_latency(base, measurement(1.5), tolerance=0.2, usual=usual / 1.5)
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

    monkeypatch.setenv(bench.SLOWDOWN_ENV, "slow/Model=3,burst/Model=3:1")
    slow = bench.measure(forward, "cpu", 1, "slow/Model", repeats=7, warmup=1)
    plain = bench.measure(forward, "cpu", 1, "plain/Model", repeats=7, warmup=1)
    assert statistics.median(slow.samples) > 1.5 * statistics.median(plain.samples)
    burst = bench.measure(forward, "cpu", 1, "burst/Model", repeats=7, warmup=1)
    after = bench.measure(forward, "cpu", 1, "burst/Model", repeats=7, warmup=1)
    assert statistics.median(burst.samples) > 1.5 * statistics.median(after.samples)
