"""Compare the outcomes of two runs, check by check: did a change alter any verdict?

    python ci/compare_results.py before/results-cpu.json after/results-cpu.json
    python ci/compare_results.py before/ after/ --reasons     # also compare each reason

Every (case, runner, check) of either file is matched with the other's. Prints the counts of each
outcome on both sides, the checks only one side has, and every check whose outcome (with
``--reasons``, also whose reason) differs; exits 1 if anything differs, so it can gate a refactor.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from hfci.errors import HfciError
from hfci.results import Record, read_results, results_files

Key = tuple[str, str, str, str]


def by_check(path: str) -> dict[Key, Record]:
    """Every record of the results files at ``path``, keyed by case, device, runner and check."""
    return {(r.case, r.device, r.runner, r.check): r for f in results_files([path]) for r in read_results(f)}


def differences(before: dict[Key, Record], after: dict[Key, Record], reasons: bool) -> list[str]:
    """One line per check that is on one side only or whose verdict moved."""
    lines = [
        f"only before: {'/'.join(k)} ({before[k].outcome})" for k in sorted(before.keys() - after.keys())
    ]
    lines += [f"only after: {'/'.join(k)} ({after[k].outcome})" for k in sorted(after.keys() - before.keys())]
    for key in sorted(before.keys() & after.keys()):
        old, new = before[key], after[key]
        if old.outcome != new.outcome:
            lines.append(f"outcome: {'/'.join(key)}: {old.outcome} -> {new.outcome} ({new.reason[:120]})")
        elif reasons and old.reason != new.reason:
            lines.append(f"reason: {'/'.join(key)}: {old.reason[:80]!r} -> {new.reason[:80]!r}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="a results file, or a directory of them")
    parser.add_argument("after", help="a results file, or a directory of them")
    parser.add_argument("--reasons", action="store_true", help="also compare each check's reason")
    args = parser.parse_args(argv)
    try:
        before, after = by_check(args.before), by_check(args.after)
    except HfciError as error:
        print(f"compare_results: error: {error}", file=sys.stderr)
        return 2
    for name, records in (("before", before), ("after", after)):
        counts = Counter(str(r.outcome) for r in records.values())
        print(f"{name}: {len(records)} checks: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    lines = differences(before, after, args.reasons)
    print(
        "\n".join(lines)
        if lines
        else "identical: every check has the same outcome" + (" and reason" * args.reasons)
    )
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
