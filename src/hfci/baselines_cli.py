"""``hfci baselines``: fold the deltas of shard jobs into one baseline per device (``merge``),
commit that onto the remote branch (``commit``), and teach a baseline the spread of repeated
runs of the same code (``learn``)."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hfci import baselines, bench, refresh, refresh_git
from hfci.matrix import DEFAULT_DURATIONS
from hfci.project import folder
from hfci.results import read_results_file, results_files

__all__ = [
    "add_command",
    "cmd_commit",
    "cmd_learn",
    "cmd_merge",
    "learn_into",
]


def learn_into(directory: Path, results: Iterable[Path]) -> list[Path]:
    """Stretch each case's seen latency range (:func:`hfci.bench.seen_range`) to hold the medians
    that repeated runs of the same code measured, whatever their verdict was.

    A stored measurement taken on a busy machine is replaced by a run's undisturbed one: its
    samples are what the next run is tested against. Which of the two was busy is read case by
    case from their references (:func:`hfci.bench.taken_busy`): the run's reference over the
    stored one, against the median of that drift over the run. A run measured against another
    protocol's baseline, with no drift to go by, falls back on the baseline's usual reference
    (:func:`hfci.bench.taken_disturbed`).
    """
    written: dict[Path, baselines.Baseline] = {}
    for path in results:
        run = read_results_file(path)
        target = baselines.path_for(run.fingerprint, directory)
        current = written.get(target) or baselines.load(target)
        if current is None:
            raise baselines.BaselineError(
                f"{path}: no baseline {target} to learn into; write one with --update-baselines first"
            )
        usual = bench.usual_reference(current.perfs())
        pairs = []
        for record in run.records:
            perf = (record.metrics or {}).get("perf") or {}
            entry = current.cases.get(baselines.key(record))
            if record.check != "benchmark" or not perf.get("ratio") or entry is None or not entry.perf:
                continue
            if perf.get("protocol", 1) != entry.perf.get("protocol", 1):
                continue  # ratios of two protocols are not comparable
            pairs.append((perf, entry, bench.reference_drift(perf, entry.perf)))
        drifts = [d for _, _, d in pairs if d]
        usual_drift = statistics.median(drifts) if drifts else None
        for perf, entry, drift in pairs:
            if drift and usual_drift:
                busy = bench.taken_busy(drift, usual_drift)
            else:
                busy = "new" if usual and bench.taken_disturbed(perf, usual) else None
                busy = busy or ("stored" if usual and bench.taken_disturbed(entry.perf, usual) else None)
            if busy == "new":
                continue  # its slow reference deflated the ratio: it teaches nothing
            if busy == "stored":
                entry.perf = perf
                continue
            seen = bench.widened(entry.perf, perf["ratio"])
            if seen:
                entry.perf = {**entry.perf, "ratio_range": seen}
        written[target] = current
    return [baselines.write(target, payload) for target, payload in written.items()]


def _learn_sources(paths: list[str]) -> list[Path]:
    # A missing path or a file of another kind is refused by results_files/learn_into, which
    # reads every file before it writes any.
    found = results_files(paths)
    if not found:
        raise baselines.BaselineError(f"no results-*.json files under {', '.join(paths)}")
    return found


def _into(args: argparse.Namespace) -> Path:
    # merge and learn write here: the project's baselines folder unless one is named.
    return Path(args.into) if args.into else folder("baselines")


def cmd_merge(args: argparse.Namespace) -> int:
    """``hfci baselines merge``: fold shard deltas into ``--into`` (see :mod:`hfci.refresh`)."""
    durations = Path(args.durations) if args.durations else None
    result = refresh.refresh(
        refresh.read(args.sources), _into(args), durations, args.expect_shards, args.require_all
    )
    for line in result.summary():
        print(line)
    for path in refresh.write(result):
        print(f"written: {path}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    """``hfci baselines commit``: fold the deltas onto the remote branch's tip and push them."""
    options = refresh_git.CommitOptions(
        into=Path(args.into),
        durations=Path(args.durations) if args.durations else None,
        remote=args.remote,
        branch=args.branch,
        retries=args.retries,
        message=args.message,
        expect_shards=args.expect_shards,
        require_all=args.require_all,
        pull_request=args.pull_request,
        pause=args.pause,
    )
    sources = refresh.read(args.sources)
    try:
        return refresh_git.commit(sources, options)
    except refresh_git.GitError as error:
        print(f"hfci: error: {error}", file=sys.stderr)
        return refresh_git.EXIT_FAILED


def cmd_learn(args: argparse.Namespace) -> int:
    """``hfci baselines learn``."""
    for path in learn_into(_into(args), _learn_sources(args.results)):
        print(f"learned: {path}")
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _fold_options(parser: argparse.ArgumentParser, durations: str | None) -> None:
    parser.add_argument("sources", nargs="+", help="delta files, or directories searched for *.delta.json")
    parser.add_argument("--into", default=str(baselines.DEFAULT_DIR), help="the baselines directory")
    parser.add_argument(
        "--durations",
        default=durations,
        metavar="PATH",
        help="also fold the measured cases' durations into this durations.json"
        + (f" (default: {durations}; '' for none)" if durations else ""),
    )
    parser.add_argument(
        "--expect-shards",
        type=_positive,
        metavar="N",
        help="name shards 1..N of each fingerprint with no delta",
    )
    parser.add_argument(
        "--require-all",
        action="store_true",
        help="refuse, writing nothing, when a shard is missing or did not complete (default: take the "
        "completed shards' cases and name the others)",
    )


def add_command(sub: Any) -> None:
    """Register ``hfci baselines``."""
    parser = sub.add_parser(
        "baselines",
        help="fold shard deltas into the baselines; commit them; learn the spread of repeated runs",
    )
    commands = parser.add_subparsers(dest="baselines_command", required=True)
    merge = commands.add_parser(
        "merge",
        help="fold shard deltas into one baseline file per fingerprint",
        description=refresh.plan.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fold_options(merge, None)
    merge.set_defaults(into=None)
    merge.set_defaults(func=cmd_merge)
    commit = commands.add_parser(
        "commit",
        help="fold shard deltas onto the remote branch's tip, commit and push (retrying on a moved branch)",
        description=refresh_git.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fold_options(commit, str(DEFAULT_DURATIONS))
    commit.add_argument("--remote", default="origin", help="the remote to fetch from and push to")
    commit.add_argument("--branch", default="main", help="the branch the baselines live on")
    commit.add_argument(
        "--retries", type=_positive, default=5, help="push attempts while the branch keeps moving"
    )
    commit.add_argument(
        "--pause", type=float, default=2.0, help="seconds between attempts, times the attempt"
    )
    commit.add_argument("--message", default=refresh_git.MESSAGE, help="the commit message")
    commit.add_argument(
        "--pull-request",
        metavar="BRANCH",
        help="push the refresh to BRANCH (from the branch's tip, force-with-lease) and open or update "
        "a pull request with gh when it and GH_TOKEN/GITHUB_TOKEN are there: for a protected branch",
    )
    commit.set_defaults(func=cmd_commit)
    learn = commands.add_parser(
        "learn", help="stretch each case's seen latency range with repeated runs of the same code"
    )
    learn.add_argument("results", nargs="+", help="results files, or directories holding them")
    learn.add_argument("--into", default=None, help="the baselines directory (default: the project's)")
    learn.set_defaults(func=cmd_learn)
