"""The cost of a runner against eager over a tier: first call (compile included) and steady state.

    python ci/bench_runners.py --runner compile --tier critical

Each case is built once; eager and the runner are timed on the same model and inputs in the same
process. Printed: the per-case ratios' median, and the summed wall times side by side.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from hfci import runners
from hfci.case import build_case
from hfci.catalog import load_catalog
from hfci.factory import FactoryError


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runner", default="compile")
    parser.add_argument("--tier", action="append", default=[])
    parser.add_argument("--category", action="append", default=[])
    parser.add_argument("--steady", type=int, default=5, help="calls timed after the first")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    runner = runners.load(args.runner)
    first, steady, totals = [], [], {"eager": 0.0, args.runner: 0.0}
    skipped = 0
    for record in load_catalog().select(args.category, (), args.tier):
        for head in record.heads:
            try:
                case = build_case(record, head.name)
                eager_first = timed(runners.eager, case.model, case.inputs)
                runner_first = timed(runner, case.model, case.inputs)
            except (FactoryError, runners.RunnerSkip, Exception):
                skipped += 1
                continue
            eager_steady = min(timed(runners.eager, case.model, case.inputs) for _ in range(args.steady))
            # A runner that compiles pays once; time the compiled model again where it caches.
            runner_steady = min(timed(runner, case.model, case.inputs) for _ in range(args.steady))
            first.append(runner_first / eager_first)
            steady.append(runner_steady / eager_steady)
            totals["eager"] += eager_first
            totals[args.runner] += runner_first
    print(f"{len(first)} cases ({skipped} skipped or failing)")
    print(f"first call   {args.runner}/eager: median ratio {statistics.median(first):.1f}x")
    print(f"steady state {args.runner}/eager: median ratio {statistics.median(steady):.2f}x")
    print(f"summed first calls: eager {totals['eager']:.1f} s, {args.runner} {totals[args.runner]:.1f} s")


if __name__ == "__main__":
    main()
