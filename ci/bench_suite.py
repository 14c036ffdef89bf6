"""The model suite itself: wall time, CPU use, peak memory, slowest cases, out-of-sample balance.

    python ci/bench_suite.py                                # the whole CPU catalog, timed
    python ci/bench_suite.py -- vision -k "not test_benchmark"   # any `hfci run` selection
    python ci/bench_suite.py --plan-from runs/a -- --tier critical
    python ci/bench_suite.py --plan-from matrices/durations.json --measured runs/b   # runs nothing
    python ci/bench_suite.py --plan-from matrices/durations.json --measured runs/b --scale-with runs/c

A run is ``hfci run --device cpu --no-baseline-check`` plus what follows ``--``, into a fresh
results folder; with ``--baselines-dir DIR`` it compares with the baselines in DIR instead (an
A/A pair: a first run with ``-- --update-baselines``, then the same again, which must flag no
regression; with ``HFCI_TEST_SLOWDOWN="*=1.5"`` the second run measures the rules' power).
The CPU use is split at the measurements' windows: while one measures, the other workers are
stopped by design; outside them every core should be busy.

Out-of-sample balance: shards planned from one run's durations (``--plan-from``, with hfci's
own ``balance``, as ``hfci matrix`` would), then each shard's seconds summed from
another run (the one just finished, or ``--measured``): the max/mean a sharded run really gets,
and how far each shard's estimate was off. A uniform scale moves no case between shards, so
``--scale-with`` (a run on the measured hardware; default: the measured run itself, which is in
sample) changes only the estimates.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hfci.bench import descendants, noise
from hfci.errors import HfciError
from hfci.matrix import durations_on, read_recorded, replay, speed_ratio
from hfci.results import case_durations, read_results_file, results_files


def seconds_of(path: str) -> tuple[dict[str, float], str]:
    """One source's cpu durations per case (scaled to its freshest hardware) and that hardware."""
    recorded = read_recorded([path])
    if "cpu" not in recorded:
        raise HfciError(f"{path}: no cpu durations in it")
    durations, hardware, _ = durations_on({"cpu": recorded["cpu"]})
    return {case: s for (case, _), s in durations.items()}, hardware["cpu"] or "unrecorded hardware"


def balance_lines(
    plan_from: Mapping[str, float], measured: Mapping[str, float], counts: Sequence[int], ratio: float = 1.0
) -> list[str]:
    """One line per shard count: believed and real max/mean, longest shard, worst estimate."""
    scaled = {case: s * ratio for case, s in plan_from.items()}
    lines = [
        f"{'shards':>6}  {'planned max/mean':>16}  {'measured max/mean':>17}  "
        f"{'longest believed':>16}  {'longest measured':>16}  {'worst shard estimate':>20}"
    ]
    for count in counts:
        result = replay(scaled, measured, count)
        lines.append(
            f"{count:>6}  {result.planned_imbalance:>16.3f}  {result.measured_imbalance:>17.3f}  "
            f"{max(result.estimated):>15.1f}s  {max(result.measured):>15.1f}s  "
            f"{result.worst_estimate * 100:>19.0f}%"
        )
    return lines


def report_balance(args: argparse.Namespace, measured_path: str) -> None:
    """Print the out-of-sample balance of a plan from ``--plan-from`` measured on ``measured_path``."""
    plan_from, plan_hw = seconds_of(args.plan_from)
    measured, measured_hw = seconds_of(measured_path)
    print(
        f"plan from {args.plan_from} ({len(plan_from)} cases, {sum(plan_from.values()):.1f} s, {plan_hw})\n"
        f"measured  {measured_path} ({len(measured)} cases, {sum(measured.values()):.1f} s, {measured_hw})"
    )
    print("as recorded:")
    print("\n".join(balance_lines(plan_from, measured, args.shards)))
    learn_path = args.scale_with or measured_path
    ratio = speed_ratio(plan_from, seconds_of(learn_path)[0])
    if ratio is None:
        print(f"not scaled: {learn_path} has no case in common with {args.plan_from}")
        return
    where = "in sample: learned from the measured run itself" if not args.scale_with else f"from {learn_path}"
    print(f"scaled x{ratio:.3f} (ratio of totals over the shared cases, {where}):")
    print("\n".join(balance_lines(plan_from, measured, args.shards, ratio)))


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0  # it exited while we looked
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields.get("VmRSS", "0 kB").split()[0])


def _tree_rss_kib(root: int) -> int:
    """The resident memory of ``root`` and every descendant, from /proc (0 where it is absent)."""
    return sum(_rss_kib(pid) for pid in [root, *descendants(root)])


def busy_jiffies() -> tuple[float, int]:
    """(now, the machine's busy CPU time so far in clock ticks, all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return time.time(), sum(fields[:8]) - idle


def cpu_outside(samples: Sequence[tuple[float, int]], windows: Sequence[Sequence[float]]) -> dict[str, float]:
    """The machine's CPU use (% of one core) outside the measurement windows and inside them,
    with the seconds each covers. A sampled interval that a window's edge cuts is shared between
    the two in proportion to its time."""
    tick = os.sysconf("SC_CLK_TCK")
    windows = sorted(windows)
    seconds = {"outside": 0.0, "measuring": 0.0}
    ticks = {"outside": 0.0, "measuring": 0.0}
    w = 0
    for (t0, b0), (t1, b1) in itertools.pairwise(samples):
        while w < len(windows) and windows[w][1] < t0:
            w += 1
        covered = sum(
            max(0.0, min(t1, end) - max(t0, start)) for start, end in windows[w : w + 8] if start < t1
        )
        share = min(1.0, covered / (t1 - t0)) if t1 > t0 else 0.0
        for name, part in (("measuring", share), ("outside", 1 - share)):
            seconds[name] += part * (t1 - t0)
            ticks[name] += part * (b1 - b0)
    out: dict[str, float] = {}
    for name in seconds:
        out[f"{name}_s"] = seconds[name]
        out[f"{name}_cpu"] = ticks[name] / tick / seconds[name] * 100 if seconds[name] else 0.0
    return out


def run_suite(
    extra: Sequence[str], results_dir: Path, baselines_dir: Path | None = None
) -> tuple[int, dict[str, Any]]:
    """Run ``hfci run`` and measure it: wall seconds, children's CPU seconds, peak memory, and the
    machine's busy ticks over time. With ``baselines_dir`` it compares with the baselines there."""
    check = ["--baselines-dir", str(baselines_dir)] if baselines_dir else ["--no-baseline-check"]
    command = [
        sys.executable, "-m", "hfci.cli", "run", "--device", "cpu", *check,
        "--results-dir", str(results_dir), *extra,
    ]  # fmt: skip
    print("+ " + " ".join(command), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # A temporary folder of the run's own, where its workers log the windows in which a
    # measurement had the others stopped (bench.stopped_log).
    tmp = Path(tempfile.mkdtemp(prefix="hfci-bench-suite-tmp-"))
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TMPDIR": str(tmp)}
    process = subprocess.Popen(command, env=os.environ | offline)
    peak_tree = 0
    ticks = [busy_jiffies()]

    def sample() -> None:
        nonlocal peak_tree
        while process.poll() is None:
            peak_tree = max(peak_tree, _tree_rss_kib(process.pid))
            time.sleep(0.5)

    def count_ticks() -> None:
        # Finer than the memory sampler: most measurements last a tenth of a second.
        while process.poll() is None:
            time.sleep(0.02)
            ticks.append(busy_jiffies())

    samplers = [threading.Thread(target=f, daemon=True) for f in (sample, count_ticks)]
    for sampler in samplers:
        sampler.start()
    code = process.wait()
    wall = time.perf_counter() - start
    for sampler in samplers:
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Linux: RUSAGE_CHILDREN's ru_maxrss is the largest RSS (KiB) of any single descendant waited
    # for (an xdist worker is waited for by its parent, and counts), not a sum.
    used = {"wall": wall, "cpu": cpu, "max_rss_kib": after.ru_maxrss, "tree_rss_kib": peak_tree}
    stopped = [
        (float(first), float(last))
        for log in tmp.glob("*.stopped")
        for _, first, last in (line.split() for line in log.read_text().splitlines() if line.count(" ") == 2)
    ]
    return code, {**used, "ticks": ticks, "stopped": stopped}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    mine = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-from", help="results file/folder or durations file to plan shards from")
    parser.add_argument("--measured", help="a finished run's results to measure the plan on; runs nothing")
    parser.add_argument("--scale-with", help="a run on the measured hardware to learn the scale from")
    parser.add_argument("--shards", nargs="+", type=int, default=[5, 8])
    parser.add_argument("--results-dir", type=Path, help="where the run writes (default: a temporary folder)")
    parser.add_argument("--slowest", type=int, default=10)
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="probe how quiet the machine is for timing, this long, before and after the run (ci/bench_noise.py)",
    )
    parser.add_argument(
        "--baselines-dir",
        type=Path,
        help="compare with the baselines here (add `-- --update-baselines` to write them): an A/A pair",
    )
    args = parser.parse_args(mine)
    if args.measured and not args.plan_from:
        parser.error("--measured needs --plan-from")
    if args.noise < 0:
        parser.error(f"--noise takes seconds to probe for, 0 for none, not {args.noise:g}")
    try:
        for path in filter(None, (args.plan_from, args.measured, args.scale_with)):
            results_files([path])  # a missing path is one clear error before anything runs
        if args.measured:
            report_balance(args, args.measured)
            return 0
        results_dir = args.results_dir or Path(tempfile.mkdtemp(prefix="hfci-bench-suite-"))
        # The rules' false positives and power depend on how quiet the machine was: say so.
        before = noise(args.noise).summary() if args.noise > 0 else None
        code, used = run_suite(extra, results_dir, args.baselines_dir)
        if before:
            print(f"\nnoise before  {before}\nnoise after   {noise(args.noise).summary()}")
        cores = os.cpu_count() or 1
        print(f"\nexit {code}")
        print(f"wall          {used['wall']:.1f} s")
        print(
            f"CPU           {used['cpu']:.1f} s user+sys = {used['cpu'] / used['wall'] * 100:.0f} % "
            f"of one core ({used['cpu'] / used['wall'] / cores * 100:.0f} % of {cores})"
        )
        print(f"peak RSS      {used['max_rss_kib'] / 1024:.0f} MiB (largest single process)")
        print(f"peak tree RSS {used['tree_rss_kib'] / 1024:.0f} MiB (all processes together, sampled 2/s)")
        path = results_dir / "results-cpu.json"
        results = read_results_file(path)
        seconds = case_durations(results.records)
        print(f"{len(seconds)} cases, {sum(seconds.values()):.1f} s of checks; results in {path}")
        # The windows the other workers were stopped in; the measurements' own where none are
        # logged (a run without xdist, or a system that cannot stop processes).
        windows = used["stopped"] or [
            r.metrics["window"] for r in results.records if r.metrics and r.metrics.get("window")
        ]
        ticks = used["ticks"]
        split = cpu_outside(ticks, windows)
        print(
            f"measuring     {split['measuring_s']:.1f} s of wall ({len(windows)} measurements, the "
            f"others stopped), machine CPU {split['measuring_cpu']:.0f} %\n"
            f"outside them  {split['outside_s']:.1f} s of wall, machine CPU {split['outside_cpu']:.0f} % "
            "(start-up and the last worker's tail included)"
        )
        if windows:
            windows = sorted(tuple(w) for w in windows)
            first, last = windows[0][0], windows[-1][1]
            between = [t for t in ticks if first <= t[0] <= last]
            # A gap of seconds between two measurements is a worker waiting out --recheck-after
            # before it re-checks its suspects, the other one done: by design, not a check's.
            waits = [(a[1], b[0]) for a, b in itertools.pairwise(windows) if b[0] - a[1] > 5]
            inner = cpu_outside(between, [*windows, *waits])
            waited = cpu_outside(between, waits)
            print(
                f"  of which    {first - ticks[0][0]:.1f} s before the first measurement, "
                f"{ticks[-1][0] - last:.1f} s after the last, {waited['measuring_s']:.1f} s at "
                f"{waited['measuring_cpu']:.0f} % waiting to re-check suspects; the rest, the checks: "
                f"{inner['outside_s']:.1f} s at {inner['outside_cpu']:.0f} %"
            )
        (results_dir / "bench-suite-cpu.json").write_text(json.dumps({"ticks": ticks, "windows": windows}))
        print(f"slowest {min(args.slowest, len(seconds))} cases:")
        for case, duration in sorted(seconds.items(), key=lambda kv: (-kv[1], kv[0]))[: args.slowest]:
            print(f"  {duration:8.2f} s  {case}")
        if args.plan_from:
            report_balance(args, str(path))
        return code
    except HfciError as error:
        print(f"bench_suite: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
