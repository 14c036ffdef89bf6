"""How quiet this machine is for timing, now: the reference workload timed back to back.

    python ci/bench_noise.py            # 30 s in half-second windows
    python ci/bench_noise.py 120 --window 1

The benchmark's ratios are only as steady as the machine: on a shared VM the reference runs at
its full speed or, while the host has the core, 1.3-2.7x slower in bursts. This prints the share
of windows in such bursts and the longest stretch of them (``hfci.bench.noise``); run it before
an A/A or power measurement, or let ``ci/bench_suite.py --noise`` do it around the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hfci.bench import noise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=0.5, help="seconds per median (default 0.5)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.window <= 0:
        parser.error(f"seconds and --window must be positive, not {args.seconds:g} and {args.window:g}")
    print(noise(args.seconds, args.window).summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
