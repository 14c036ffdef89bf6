"""Bench: the timing and memory protocol, and the statistics that compare two measurements.

Shared runners drift between jobs, so a latency is stored with a reference workload timed in the
same process, interleaved with the case: the ratio of the two medians is what carries across
jobs. A regression must be beyond tolerance, statistically clear (Mann-Whitney U) and survive a
re-measure; memory (near-deterministic) gets its own, tighter tolerance.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fnmatch
import functools
import gc
import math
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALPHA",
    "BUDGET",
    "DISTURBED",
    "DRAW_SEED",
    "MIN_REPEATS",
    "NOISY",
    "PRECISION",
    "PROFILES",
    "PROTOCOL",
    "REMEASURES",
    "REPEATS",
    "RETAKES",
    "SEEN_MARGIN",
    "SLOWDOWN_ENV",
    "THREADS",
    "WARMUP",
    "WARMUP_BUDGET",
    "Measurement",
    "Noise",
    "StoppedTime",
    "Verdict",
    "can_freeze",
    "comparable",
    "compare_latency",
    "compare_memory",
    "descendants",
    "disturbed",
    "latency_stats",
    "machine_idle",
    "machine_lock",
    "machine_to_itself",
    "mann_whitney_greater",
    "measure",
    "noise",
    "outcome",
    "peak_memory",
    "pooled",
    "quartiles",
    "reference_drift",
    "reference_workload",
    "same_draws",
    "seen_range",
    "sig",
    "slowdown_for",
    "slowdowns",
    "steady_allocator",
    "stopped_log",
    "taken_busy",
    "taken_disturbed",
    "thaw",
    "usual_of",
    "usual_reference",
    "widened",
]

# The measurement protocol's version, stored with every measurement: ratios of two protocols
# are not comparable (protocol 2 warms the reference, which raised every ratio by about a third;
# protocol 3 sizes its sample to the case and reads the memory profile's raw allocations).
PROTOCOL = 3
# Warm-up forwards: at most WARMUP, fewer once WARMUP_BUDGET seconds are spent (at least one).
WARMUP = 5
WARMUP_BUDGET = 0.05
# Immediate re-measures of a suspected regression, judged with it on their samples together.
REMEASURES = 3
# Timed pairs per take: at least MIN_REPEATS, at most REPEATS. Between the two a take stops once
# BUDGET seconds are spent or the median ratio is known to within PRECISION (see _tight).
# Nine is the least at which a 1.5x slowdown still clears the Mann-Whitney test at ALPHA with
# room to spare: nine against nine stored samples, wholly separated, give p = 2e-4.
MIN_REPEATS = 9
REPEATS = 21
BUDGET = 0.25
PRECISION = 0.05
# A measurement whose reference ran this much slower than it should is retaken (see measure).
# On a 2-core VM a case's forward and reference each move by up to +-50 % between runs, and
# together (correlation 0.89 over 362 cases), so that their ratio moves by +-20 % (2nd-98th
# percentile 0.79-1.26): at 1.25 a quarter of the stored measurements and a third of the new
# ones counted as disturbed. Twice is what another runnable process on the core costs.
DISTURBED = 2.0
RETAKES = 1
THREADS = 1
# One-sided p-value below which a slowdown counts as statistically clear.
ALPHA = 0.01
SLOWDOWN_ENV = "HFCI_TEST_SLOWDOWN"
DRAW_SEED = 0
PROFILES = 3  # attempts at a CPU memory profile that records an allocation
# A median this close to the seen range is jitter, not another mode: the range (and the baseline
# file) stays as it is, so a refresh after an unchanged run rewrites few lines.
SEEN_MARGIN = 0.10
# A window of the noise probe whose reference ran this much slower than the quietest one had
# something else on the core (see Noise).
NOISY = 1.25
# glibc mallopt parameters, and the values that keep a measured forward's memory mapped.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_STEADY_MALLOC = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}


@dataclass
class Measurement:
    """Latency samples of a case and of the reference workload, taken interleaved."""

    samples: list[float]
    reference: list[float]
    batch: int
    peak_memory: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def ratio(self) -> float:
        """The median of the pairwise ratios: what carries across runs of one machine kind."""
        return statistics.median(self.normalised)

    @property
    def normalised(self) -> list[float]:
        """Each sample divided by the reference run timed just before it.

        Adjacent pairs share the machine's state (clock, cache, a noisy neighbour), so their
        ratio cancels most of the drift that a ratio of two medians would keep.
        """
        return [s / r for s, r in zip(self.samples, self.reference, strict=True)]

    @property
    def throughput(self) -> float:
        return self.batch / self.median

    def to_dict(self) -> dict[str, Any]:
        """What a baseline stores of the measurement."""
        return {
            "latency": latency_stats(self.samples),
            "reference": latency_stats(self.reference),
            "ratio": sig(self.ratio),
            "samples": [sig(s, 3) for s in self.normalised],
            "throughput": sig(self.throughput),
            "peak_memory": self.peak_memory,
            "protocol": PROTOCOL,
        }


def sig(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits: stable text, no float noise in diffs."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile), inclusive, so two samples are enough."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], q[1], q[2]


def latency_stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, interquartile range and count of timing samples, to stored precision."""
    q1, median, q3 = quartiles(samples)
    return {"median": sig(median), "iqr": sig(q3 - q1), "n": len(samples)}


def mann_whitney_greater(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided p-value that ``a`` tends to be larger than ``b`` (normal approximation, ties corrected)."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return 1.0
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    tie_term = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, group) in zip(ranks, ranked, strict=True) if group == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return 1.0 if u1 <= n1 * n2 / 2 else 0.0
    z = (u1 - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def slowdowns(env: str | None = None) -> dict[str, tuple[float, int | None]]:
    """Test-only: ``HFCI_TEST_SLOWDOWN="bert/ForMaskedLM=1.5,gpt2/Model=2:4"`` slows those cases:
    bert by 1.5x in every measurement, gpt2 by 2x in its first 4 measurements of the process only
    (a burst of noise, which a later re-check must clear). A case may be a shell pattern
    (``"*=1.5"`` slows every case, as a power test does)."""
    text = os.environ.get(SLOWDOWN_ENV, "") if env is None else env
    out: dict[str, tuple[float, int | None]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        case, _, spec = item.rpartition("=")
        factor, _, limit = spec.partition(":")
        out[case] = (float(factor), int(limit) if limit else None)
    return out


def slowdown_for(case: str, env: str | None = None) -> tuple[float, int | None]:
    """The test-only slowdown of ``case``: its own entry, else the first pattern it matches."""
    table = slowdowns(env)
    if case in table:
        return table[case]
    return next((v for pattern, v in table.items() if fnmatch.fnmatchcase(case, pattern)), (1.0, None))


# How often each case was measured in this process (for the test-only slowdown's limit).
_MEASURED: Counter[str] = Counter()


def _synchronize(device: str) -> Callable[[], None]:
    import torch

    module = getattr(torch, device, None)
    sync = getattr(module, "synchronize", None) if device != "cpu" else None
    return sync or (lambda: None)


def reference_workload(device: str = "cpu") -> Callable[[], None]:
    """A fixed tiny network, on the same device: module calls, small matmuls, norms.

    A tiny model's forward is mostly framework overhead; a reference made of the same kind of
    work drifts with it (a bare matmul loop did not: its ratio moved 17 % within one process).
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    torch_random_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(
        torch.nn.Sequential(
            torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32), torch.nn.LayerNorm(32)
        )
        for _ in range(4)
    ).to(device)
    torch.random.set_rng_state(torch_random_state)
    x = torch.randn(2, 8, 32, generator=generator).to(device)

    def run() -> None:
        h = x
        for block in blocks:
            h = h + block(h)

    return run


@dataclass(frozen=True)
class Noise:
    """How quiet the machine is for timing: the reference workload's median in each of
    back-to-back windows of ``window`` seconds (see :func:`noise`).

    On a shared VM the reference runs at its full speed or, while the host has the core, in
    bursts 1.3-2.7x slower; the share of half-second windows in such bursts went from 17 % to
    43 % within one hour on this workplace's idle VM. A latency comparison is only as good as the
    quiet it was measured in, so A/A and power figures are quoted with this.
    """

    window: float
    medians: tuple[float, ...]

    @property
    def quiet(self) -> float:
        """The quietest window's median: the reference at the machine's full speed."""
        return min(self.medians)

    @property
    def noisy(self) -> list[bool]:
        """Per window, whether it ran ``NOISY`` times slower than the quietest."""
        return [m > NOISY * self.quiet for m in self.medians]

    @property
    def share(self) -> float:
        return sum(self.noisy) / len(self.medians)

    @property
    def longest(self) -> float:
        """The longest stretch of noisy windows back to back, in seconds."""
        longest = run = 0
        for noisy in self.noisy:
            run = run + 1 if noisy else 0
            longest = max(longest, run)
        return longest * self.window

    def summary(self) -> str:
        slow = [m / self.quiet for m, noisy in zip(self.medians, self.noisy, strict=True) if noisy]
        within = f" (median {statistics.median(slow):.2f}x)" if slow else ""
        return (
            f"reference {self.quiet * 1e6:.0f} µs at its quietest; {self.share:.0%} of "
            f"{len(self.medians)} windows of {self.window:g} s ran over {NOISY:g}x that{within}, "
            f"the longest stretch {self.longest:g} s"
        )


def noise(seconds: float = 30.0, window: float = 0.5, device: str = "cpu") -> Noise:
    """Time the reference workload back to back for ``seconds``, one thread, a median per window."""
    import torch

    reference, sync = reference_workload(device), _synchronize(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    medians: list[float] = []
    try:
        with torch.inference_mode():
            end = time.perf_counter() + seconds
            while time.perf_counter() < end or not medians:
                times: list[float] = []
                until = time.perf_counter() + window
                while time.perf_counter() < until or not times:
                    times.append(_timed(reference, sync))
                medians.append(statistics.median(times))
    finally:
        torch.set_num_threads(threads)
    return Noise(window, tuple(medians))


@functools.cache
def steady_allocator() -> bool:
    """Fix glibc malloc's thresholds for this process; False where there is no glibc.

    By default glibc returns freed memory at the heap's top to the system, and serves large
    blocks with fresh mappings, at thresholds that adapt to what the process allocated before.
    A forward then pays page faults in some processes and not in others: fresh processes timed
    pegasus_x's forward at 65-78 ms, or at 34-37 ms with fixed thresholds. Fixed, the memory of
    the warm-up stays mapped and every process times the computation.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(param, value) == 1 for param, value in _STEADY_MALLOC.items())


def _timed(fn: Callable[[], Any], sync: Callable[[], None], stretch: float = 1.0) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    elapsed = time.perf_counter() - start
    if stretch > 1.0:
        # Busy-wait rather than sleep: a slowed case must look like real work to the timer.
        until = time.perf_counter() + elapsed * (stretch - 1.0)
        while time.perf_counter() < until:
            pass
        elapsed = time.perf_counter() - start
    return elapsed


def measure(
    forward: Callable[[], Any],
    device: str,
    batch: int,
    case: str = "",
    repeats: int = REPEATS,
    warmup: int = WARMUP,
    min_repeats: int = MIN_REPEATS,
    budget: float = BUDGET,
    expected_reference: float | None = None,
) -> Measurement:
    """Warm up, then time forwards, each right after one reference run, until the take is
    sized to the case: ``min_repeats`` to ``repeats`` pairs, stopping early once ``budget``
    seconds are spent or the median ratio is tight (pyperf and asv size their runs the same way:
    a 60 ms forward gets nine samples, a 1 ms forward as many as it needs to settle).

    The reference is run once untimed before each timed run: right after a large forward its
    first run pays for the caches the forward evicted, a cost that grows with the model and
    would move the ratio (cold references spread 415-597 µs across fresh processes of one case,
    warm ones 310-357 µs).

    The reference doubles as a canary. It is the same work for every case, so its median is
    nearly constant within a process; a measurement whose reference ran ``DISTURBED`` times
    slower than this process's usual was taken while something else had the machine, and is
    retaken (up to ``RETAKES`` times; the least disturbed one is kept). Interleaving does not
    cancel such a disturbance: in a whole-catalog A/A run every case whose ratio moved by more
    than 20 % had a reference 1.5-2.3x its usual, in the baseline or in the new run. With
    ``expected_reference`` (the case's stored reference median) the usual is the case's own.
    """
    import torch

    steady_allocator()
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    # Its reseeding (same_draws) stays inside: the checks after a benchmark draw what they would.
    with torch.random.fork_rng(devices=[] if device == "cpu" else None, device_type=device):
        try:
            reference = reference_workload(device)
            sync = _synchronize(device)
            factor, limit = slowdown_for(case)
            _MEASURED[case] += 1
            stretch = factor if limit is None or _MEASURED[case] <= limit else 1.0
            if expected_reference:
                # Relative to the case's stored reference: what precedes the reference (each
                # model's forward) moves it by up to 1.7x on a quiet machine, the same in every
                # run of the case, which the process's usual cannot tell from a busy machine.
                # The usual of these drifts is the machine's speed against the baseline's.
                scale, seen = expected_reference, _DRIFTS.setdefault(device, [])
                usual = seen[-USUAL_WINDOW:] if len(seen) >= CALIBRATION else [1.0]
            else:
                scale = 1.0
                seen = _REFERENCE_MEDIANS.get(device) or _calibrate(device, reference, sync, REPEATS)
                usual = usual_of(seen)
            kept: tuple[list[float], list[float]] | None = None
            retakes = 0
            while True:
                samples, refs = _sample(
                    forward, reference, sync, stretch, (min(min_repeats, repeats), repeats), warmup, budget
                )
                if kept is None or statistics.median(refs) < statistics.median(kept[1]):
                    kept = samples, refs
                if retakes == RETAKES or not disturbed(statistics.median(refs) / scale, usual):
                    break
                retakes += 1
            still_disturbed = disturbed(statistics.median(kept[1]) / scale, usual)
            seen.append(statistics.median(kept[1]) / scale)
            extra: dict[str, Any] = {"retakes": retakes, "disturbed": still_disturbed}
            if expected_reference:
                extra |= {"drift": seen[-1], "usual_drift": statistics.median(usual)}
            return Measurement(*kept, batch, peak_memory(forward, device), extra)
        finally:
            torch.set_num_threads(threads)


def pooled(takes: Sequence[Measurement]) -> Measurement:
    """Several takes of one case as one measurement: their samples together; disturbed when most
    of them were, the memory peak of the first."""
    first = takes[0]
    drifts = [t.extra["drift"] for t in takes if "drift" in t.extra]
    extra: dict[str, Any] = {
        "retakes": sum(t.extra.get("retakes", 0) for t in takes),
        "disturbed": sum(bool(t.extra.get("disturbed")) for t in takes) * 2 > len(takes),
        "takes": len(takes),
    }
    if drifts:
        extra |= {"drift": statistics.median(drifts), "usual_drift": takes[-1].extra["usual_drift"]}
    return Measurement(
        [s for t in takes for s in t.samples],
        [r for t in takes for r in t.reference],
        first.batch,
        first.peak_memory,
        extra,
    )


# The reference medians of this process, per device: CALIBRATION of the reference alone, then
# one per measurement.
_REFERENCE_MEDIANS: dict[str, list[float]] = {}
CALIBRATION = 5
USUAL_WINDOW = 31
# Per device, each measurement's reference median over its case's stored one.
_DRIFTS: dict[str, list[float]] = {}


def usual_of(seen: Sequence[float]) -> Sequence[float]:
    """The medians that stand for the process's usual reference: its last ``USUAL_WINDOW``
    measurements' once there are ``CALIBRATION`` of them, else the calibration's.

    The calibration times the reference in a loop of its own, hot; between a model's forwards
    it runs about 10 % slower even on a quiet machine, and 1.5-2.3x in a process's first
    measurements: against the calibration alone, a whole-catalog run retook a third of its
    measurements three times over, each still "disturbed". A window follows the machine's
    drift; its median ignores a burst of disturbed measurements shorter than half of it.
    """
    measured = seen[CALIBRATION:]
    return measured[-USUAL_WINDOW:] if len(measured) >= CALIBRATION else seen[:CALIBRATION]


def disturbed(reference_median: float, usual: Sequence[float]) -> bool:
    """Whether a reference median is beyond ``DISTURBED`` times the usual one."""
    return bool(usual) and reference_median > DISTURBED * statistics.median(usual)


def _calibrate(
    device: str, reference: Callable[[], None], sync: Callable[[], None], repeats: int
) -> list[float]:
    """The process's first usual reference medians: the reference alone, five times over."""
    import torch

    with torch.inference_mode():
        for _ in range(repeats):
            reference()
        medians = [
            statistics.median(_timed(reference, sync) for _ in range(repeats)) for _ in range(CALIBRATION)
        ]
    _REFERENCE_MEDIANS[device] = medians
    return medians


def same_draws() -> None:
    """Reseed torch, so a forward that samples allocates the same in every process.

    Only the memory profile is reseeded: a reseed before each timed forward moved every case's
    ratio up by 8.5 % in a whole-catalog run (70 false latency regressions).

    VITS draws its phoneme durations in the forward, and its output length with them: one
    whole-catalog run in four measured its peak memory 20 % above the other three.
    """
    import torch

    torch.manual_seed(DRAW_SEED)


def _tight(samples: Sequence[float], refs: Sequence[float], precision: float = PRECISION) -> bool:
    """Whether the 95 % confidence interval of the median ratio lies within ``precision`` of it.

    The interval is distribution-free: the order statistics ranked ``n/2 -+ 1.96 sqrt(n)/2``.
    """
    ratios = sorted(s / r for s, r in zip(samples, refs, strict=True))
    n = len(ratios)
    half = 1.96 * math.sqrt(n) / 2
    low, high = ratios[max(0, math.floor(n / 2 - half))], ratios[min(n - 1, math.ceil(n / 2 + half) - 1)]
    return high - low <= 2 * precision * statistics.median(ratios)


def _sample(
    forward: Callable[[], Any],
    reference: Callable[[], None],
    sync: Callable[[], None],
    stretch: float,
    repeats: tuple[int, int],
    warmup: int,
    budget: float,
) -> tuple[list[float], list[float]]:
    import torch

    least, most = repeats
    collecting = gc.isenabled()
    gc.disable()  # a collection inside a timed call is noise, not the model's cost
    try:
        with torch.inference_mode():
            warm = 0.0
            for _ in range(warmup):
                warm += _timed(forward, sync)
                reference()
                if warm >= WARMUP_BUDGET:
                    break
            samples: list[float] = []
            refs: list[float] = []
            start = time.perf_counter()
            while len(samples) < most:
                reference()
                refs.append(_timed(reference, sync))
                samples.append(_timed(forward, sync, stretch))
                if len(samples) >= least and (time.perf_counter() - start >= budget or _tight(samples, refs)):
                    break
        return samples, refs
    finally:
        if collecting:
            gc.enable()


@contextlib.contextmanager
def machine_lock(path: str | os.PathLike[str] | None, exclusive: bool) -> Iterator[None]:
    """Workers of one run share the machine: checks hold it shared, a measurement alone.

    While one worker measures, the others finish the check in hand and wait, so no model build
    or save on the other core disturbs the timings. Without a path (no xdist) it does nothing.
    """
    if not path:
        yield
        return
    import fcntl

    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def machine_idle(path: str | os.PathLike[str] | None) -> Iterator[bool]:
    """Whether no worker is measuring; when none is, the machine is held shared for the block.

    For work outside the checks (the controller's partial results writes) that must not disturb a
    measurement but need not wait for one either. Without a path (no xdist) it is always idle.
    """
    if not path:
        yield True
        return
    import fcntl

    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _process_children() -> dict[int, list[int]]:
    """Every process's children, read from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue  # it exited while we looked
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """The processes below ``pid``: its children, theirs, and so on."""
    children = _process_children() if children is None else children
    found, stack = [], list(children.get(pid, ()))
    while stack:
        found.append(stack.pop())
        stack += children.get(found[-1], ())
    return found


def can_freeze() -> bool:
    """Whether this system lets a measurement stop its sibling workers (/proc and SIGSTOP)."""
    return os.path.isdir("/proc") and hasattr(signal, "SIGSTOP")


def _command(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("T", "t", "Z", "X")
    except OSError:
        return True  # gone


def thaw(pids: Iterable[int]) -> None:
    """Continue stopped processes (a process that is running or gone is left as it is)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def machine_to_itself(path: str | os.PathLike[str] | None) -> Iterator[list[int]]:
    """The machine for one measurement: the other workers of the run, and all they started, are
    stopped for the block (SIGSTOP), then continued; yields their pids.

    Workers of one xdist run are the children of one controller. Stopping them costs nothing:
    they resume where they were, whereas waiting for each to finish its check in hand (a lock
    taken between checks) left one core idle for about as long as the measurements themselves.
    Measurements still take turns, by an exclusive lock on ``path``. Where processes cannot be
    stopped, the checks take the same lock shared (see :func:`machine_lock`) and this only
    takes it exclusively. Without a path (no xdist) it does nothing.
    """
    if not path:
        yield []
        return
    with machine_lock(path, exclusive=True):
        if not can_freeze():
            yield []
            return
        me, children = os.getpid(), _process_children()
        # Workers started as this one was (execnet's bootstrap command): never a process that
        # merely shares the parent, such as every orphan of init's should the controller die.
        siblings = [p for p in children.get(os.getppid(), ()) if p != me and _command(p) == _command(me)]
        stopped: list[int] = []
        try:
            for pid in siblings + [d for s in siblings for d in descendants(s, children)]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            # The signal is delivered asynchronously: wait (briefly) until each has stopped.
            deadline = time.monotonic() + 0.5
            while not all(map(_stopped, stopped)) and time.monotonic() < deadline:
                time.sleep(0.0005)
            since = time.time()
            yield stopped
        finally:
            thaw(stopped)
            if stopped:
                # For the stopped workers: their checks' durations leave this window out.
                with open(stopped_log(path), "a") as log:
                    log.write(f"{os.getpid()} {since:.4f} {time.time():.4f}\n")


def stopped_log(path: str | os.PathLike[str]) -> str:
    """Where measurements under the lock ``path`` log the windows the other workers were stopped."""
    return f"{os.fspath(path)}.stopped"


@dataclass
class StoppedTime:
    """A worker's view of the windows it was stopped in (:func:`machine_to_itself`), read from
    the run's log as it grows."""

    path: str | None
    windows: list[tuple[float, float]] = field(default_factory=list)
    offset: int = 0

    def within(self, start: float, stop: float) -> float:
        """Seconds of ``[start, stop]`` (``time.time()``) this worker spent stopped."""
        if not self.path:
            return 0.0
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as log:
            log.seek(self.offset)
            for line in log:
                if not line.endswith(b"\n"):
                    break  # a line being written is read next time
                self.offset += len(line)
                pid, first, last = line.split()
                if int(pid) != os.getpid():  # a worker's own measurements stop the others
                    self.windows.append((float(first), float(last)))
        self.windows = [w for w in self.windows if w[1] > start - 3600]
        return sum(max(0.0, min(stop, last) - max(start, first)) for first, last in self.windows)


def peak_memory(forward: Callable[[], Any], device: str) -> int | None:
    """Peak bytes allocated by torch during one forward.

    CUDA: the caching allocator's peak after a reset. CPU: torch's profiler records every
    allocation and free of its CPU allocator (tracemalloc sees none of them); the peak of their
    running sum over the forward is the figure.
    """
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        same_draws()
        with torch.inference_mode():
            forward()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    if device != "cpu":
        return None
    # A model's forward always allocates: a profile that recorded nothing missed it (one whole-
    # catalog run in five saw unispeech's 163840-byte peak as 0), and is taken again.
    for _ in range(PROFILES):
        peak = _profiled_peak(forward)
        if peak:
            return peak
    return None


def _profiled_peak(forward: Callable[[], Any]) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    same_draws()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, torch.inference_mode():
        forward()
    # The raw allocation records, each with its time and signed size: the profiler's event tree
    # (prof.events()) would say the same per operator, at 10x the forward's cost to build.
    steps = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    live = peak = 0
    for _, size in steps:
        live += size
        peak = max(peak, live)
    return int(peak)


# -- comparison --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one comparison found: 'regression', 'improvement' or 'unchanged', and why."""

    kind: str
    metric: str
    detail: str


def comparable(stored: dict[str, Any] | None) -> bool:
    """A stored measurement this protocol can compare with (entries without a version are 1)."""
    return bool(stored) and stored.get("protocol", 1) == PROTOCOL


def seen_range(baseline: dict[str, Any]) -> tuple[float, float]:
    """The lowest and highest reference-normalised medians the baseline has seen for a case.

    Some heavy cases settle into another speed in each process: three whole-catalog runs of the
    same code timed qianfan_ocr at 120, 197 and 197. One run's median is then one point of a range,
    and a regression is a ratio beyond the range, not beyond the point.
    """
    ratio = baseline["ratio"]
    low, high = baseline.get("ratio_range") or (ratio, ratio)
    return min(low, ratio), max(high, ratio)


def widened(baseline: dict[str, Any], ratio: float, margin: float = SEEN_MARGIN) -> list[float] | None:
    """The seen range stretched to hold ``ratio``; None when it holds it within ``margin``."""
    low, high = seen_range(baseline)
    if low * (1 - margin) <= ratio <= high * (1 + margin):
        return None
    return [sig(min(low, ratio)), sig(max(high, ratio))]


def usual_reference(entries: Iterable[dict[str, Any]]) -> float | None:
    """The median reference time of a baseline's measurements: its machine's usual."""
    medians = [e["reference"]["median"] for e in entries if comparable(e) and e.get("reference")]
    return statistics.median(medians) if medians else None


def taken_disturbed(stored: dict[str, Any], usual: float) -> bool:
    """Whether a stored measurement's reference ran ``DISTURBED`` times slower than ``usual``."""
    reference = (stored.get("reference") or {}).get("median")
    return bool(reference) and disturbed(reference, [usual])


def taken_busy(drift: float, usual_drift: float) -> str | None:
    """Which of two measurements of one case was taken on a busy machine, by ``drift`` (the new
    reference median over the stored one) against the run's usual drift: "new", "stored" or None."""
    if disturbed(drift, [usual_drift]):
        return "new"
    if disturbed(usual_drift, [drift]):
        return "stored"
    return None


def reference_drift(new: dict[str, Any], stored: dict[str, Any]) -> float | None:
    """A stored measurement's reference median over another's of the same case (None without)."""
    a, b = (new.get("reference") or {}).get("median"), (stored.get("reference") or {}).get("median")
    return a / b if a and b else None


def compare_latency(
    baseline: dict[str, Any],
    new: Measurement,
    tolerance: float,
    alpha: float = ALPHA,
    usual: float | None = None,
) -> Verdict:
    """Reference-normalised median beyond tolerance of the seen range AND a clear Mann-Whitney U
    difference from the stored samples.

    A stored measurement taken while something else had the machine is no evidence either way:
    its verdict is 'disturbed', and a refresh replaces it. Where the new measurement was taken
    against the stored reference (``extra["drift"]``, see :func:`measure`), that is a stored
    reference ``DISTURBED`` times slower than the run's usual drift says the case's should be;
    otherwise one ``DISTURBED`` times slower than ``usual``, the baseline's usual reference.
    """
    old_samples = baseline.get("samples") or []
    old_ratio = baseline.get("ratio")
    if not old_samples or not old_ratio:
        return Verdict("unchanged", "latency", "no baseline samples")
    drift, usual_drift = new.extra.get("drift"), new.extra.get("usual_drift")
    if drift and usual_drift:
        busy = usual_drift / drift if taken_busy(drift, usual_drift) == "stored" else None
    else:
        busy = baseline["reference"]["median"] / usual if usual and taken_disturbed(baseline, usual) else None
    if busy is not None:
        return Verdict(
            "disturbed",
            "latency",
            f"baseline measured on a busy machine (reference {busy:.2g}x its usual): not compared; "
            "a refresh replaces it",
        )
    low, high = seen_range(baseline)
    p_slower = mann_whitney_greater(new.normalised, old_samples)
    p_faster = mann_whitney_greater(old_samples, new.normalised)
    slower, faster = new.ratio / high - 1, new.ratio / low - 1
    change = slower if slower > 0 else faster if faster < 0 else new.ratio / old_ratio - 1
    seen = f" (seen {low:.3g}-{high:.3g})" if low != high else ""
    detail = (
        f"ratio {old_ratio:.3g}{seen} -> {new.ratio:.3g} ({change:+.0%}), p={min(p_slower, p_faster):.2g}"
    )
    if slower > tolerance and p_slower < alpha:
        return Verdict("regression", "latency", detail)
    if faster < -tolerance and p_faster < alpha:
        return Verdict("improvement", "latency", detail)
    return Verdict("unchanged", "latency", detail)


def outcome(
    stored: dict[str, Any] | None, new: Measurement, latency: Verdict | None, memory_tolerance: float
) -> dict[str, Any]:
    """What a benchmark records: the measurement, its verdicts that are not 'unchanged', whether a
    refresh rewrites the stored entry, and the seen range a refresh stretches it to."""
    found: list[Verdict] = []
    seen = None
    if stored and latency is not None:
        memory = compare_memory(stored, new, memory_tolerance)
        found = [v for v in (latency, memory) if v.kind != "unchanged"]
        # A ratio taken on a busy machine is deflated by its slow reference: it teaches no range.
        if latency.kind == "unchanged" and stored.get("ratio") and not new.extra.get("disturbed"):
            # Within tolerance yet outside the range seen so far: a refresh stretches the range.
            seen = widened(stored, new.ratio) or (stored.get("ratio_range") if found else None)
    return {
        "perf": new.to_dict(),
        "changed": not stored or bool(found),
        "ratio_range": seen,
        "retakes": new.extra.get("retakes", 0),
        "verdicts": [{"kind": v.kind, "metric": v.metric, "detail": v.detail} for v in found],
    }


def compare_memory(baseline: dict[str, Any], new: Measurement, tolerance: float) -> Verdict:
    """A peak-memory verdict: a regression beyond ``tolerance`` of the stored peak."""
    old, now = baseline.get("peak_memory"), new.peak_memory
    if not old or now is None:
        return Verdict("unchanged", "memory", "no baseline memory")
    change = now / old - 1
    detail = f"peak {old} -> {now} bytes ({change:+.1%})"
    if change > tolerance:
        return Verdict("regression", "memory", detail)
    if change < -tolerance:
        return Verdict("improvement", "memory", detail)
    return Verdict("unchanged", "memory", detail)
