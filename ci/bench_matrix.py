"""Shard balance of hfci's planner on recorded durations: LPT against plain contiguous slicing.

    python ci/bench_matrix.py --results results/            # results-*.json files or folders of them
    python ci/bench_matrix.py --results matrices/durations.json --shards 4 8 16

For each device with records, prints the longest shard over the mean shard (1.00 is perfect;
the wall time of a sharded run is its longest shard) for LPT and for slicing the sorted cases
into equal-length runs. Only recorded cases are used: estimates would flatter both.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hfci.errors import HfciError
from hfci.matrix import balance, contiguous, durations_for, read_durations


def max_over_mean(shards: Sequence[Sequence[str]], seconds: dict[str, float]) -> tuple[float, float, float]:
    """(longest shard / mean shard, longest shard seconds, mean shard seconds)."""
    loads = [sum(seconds[case] for case in shard) for shard in shards]
    mean = sum(loads) / len(loads)
    return (max(loads) / mean if mean else 1.0), max(loads), mean


def report(seconds: dict[str, float], counts: Sequence[int]) -> list[str]:
    lines = [
        f"{len(seconds)} cases, {sum(seconds.values()) / 60:.1f} min in all, "
        f"longest case {max(seconds.values()):.1f} s",
        f"{'shards':>6}  {'LPT max/mean':>12}  {'contiguous max/mean':>19}  {'LPT longest':>11}  {'mean':>8}",
    ]
    for count in counts:
        if count > len(seconds):
            lines.append(f"{count:>6}  (fewer cases than shards)")
            continue
        lpt, longest, mean = max_over_mean(balance(seconds, count), seconds)
        plain, _, _ = max_over_mean(contiguous(seconds, count), seconds)
        lines.append(f"{count:>6}  {lpt:>12.3f}  {plain:>19.3f}  {longest:>10.1f}s  {mean:>7.1f}s")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", default=["results"], help="results files or directories")
    parser.add_argument("--shards", nargs="+", type=int, default=[4, 8, 16])
    args = parser.parse_args(argv)
    existing = [path for path in args.results if Path(path).exists()]
    try:
        durations = read_durations(existing)
    except HfciError as error:
        print(f"bench_matrix: {error}", file=sys.stderr)
        return 2
    if not durations:
        where = ", ".join(args.results)
        print(f"bench_matrix: no recorded durations in {where}; run `hfci run --device cpu` first.")
        return 1
    for device in sorted({device for _, device in durations}):
        seconds = durations_for(durations, device)
        print(f"== {device}")
        print("\n".join(report(seconds, args.shards)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
