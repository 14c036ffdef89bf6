"""``hfci baselines``: fold the baseline files of shard jobs into one per device (``merge``), and
teach a baseline the spread of repeated runs of the same code (``learn``)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hfci import baselines, bench
from hfci.results import read_results_file, results_files

__all__ = [
    "add_command",
    "baseline_files",
    "cmd_learn",
    "cmd_merge",
    "learn_into",
    "merge_into",
]


def baseline_files(paths: Iterable[str | Path]) -> list[Path]:
    """The baseline files named, or found one level under the directories named."""
    found: list[Path] = []
    for path in map(Path, paths):
        found += sorted(path.rglob("*.json")) if path.is_dir() else [path]
    return found


def merge_into(directory: Path, sources: Iterable[Path]) -> list[Path]:
    """Each source's cases into ``directory/<fingerprint>.json``; cases no source has are kept."""
    written: dict[Path, baselines.Baseline] = {}
    for source in sources:
        incoming = baselines.load(source)
        if incoming is None:
            continue
        target = baselines.path_for(incoming.fingerprint, directory)
        current = written.get(target) or baselines.load(target)
        cases = {**(current.cases if current else {}), **incoming.cases}
        written[target] = dataclasses.replace(incoming, cases=dict(sorted(cases.items())))
    return [baselines.write(target, payload) for target, payload in written.items()]


def learn_into(directory: Path, results: Iterable[Path]) -> list[Path]:
    """Stretch each case's seen latency range (:func:`hfci.bench.seen_range`) to hold the medians
    that repeated runs of the same code measured, whatever their verdict was.

    A stored measurement taken on a busy machine (see :func:`hfci.bench.taken_disturbed`) is
    replaced by a run's undisturbed one: its samples are what the next run is tested against.
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
        for record in run.records:
            perf = (record.metrics or {}).get("perf") or {}
            entry = current.cases.get(baselines.key(record))
            if record.check != "benchmark" or not perf.get("ratio") or entry is None or not entry.perf:
                continue
            if perf.get("protocol", 1) != entry.perf.get("protocol", 1):
                continue  # ratios of two protocols are not comparable
            if usual and bench.taken_disturbed(perf, usual):
                continue  # its slow reference deflated the ratio: it teaches nothing
            if usual and bench.taken_disturbed(entry.perf, usual):
                entry.perf = perf
                continue
            seen = bench.widened(entry.perf, perf["ratio"])
            if seen:
                entry.perf = {**entry.perf, "ratio_range": seen}
        written[target] = current
    return [baselines.write(target, payload) for target, payload in written.items()]


def _fold(sources: list[Path], names: list[str], kind: str, fold: Any, verb: str) -> int:
    if not sources:
        raise baselines.BaselineError(f"no {kind} files under {', '.join(names)}")
    for path in fold(sources):
        print(f"{verb}: {path}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """``hfci baselines merge``."""
    sources = baseline_files(args.sources)
    return _fold(sources, args.sources, "baseline", lambda s: merge_into(Path(args.into), s), "merged")


def cmd_learn(args: argparse.Namespace) -> int:
    """``hfci baselines learn``."""
    sources = results_files(args.results)
    return _fold(sources, args.results, "results", lambda s: learn_into(Path(args.into), s), "learned")


def add_command(sub: Any) -> None:
    """Register ``hfci baselines``."""
    parser = sub.add_parser("baselines", help="merge shard baselines; learn the spread of repeated runs")
    commands = parser.add_subparsers(dest="baselines_command", required=True)
    merge = commands.add_parser("merge", help="merge shard baselines into one file per fingerprint")
    merge.add_argument("sources", nargs="+", help="baseline files, or directories holding them")
    merge.add_argument("--into", default=str(baselines.DEFAULT_DIR), help="the baselines directory")
    merge.set_defaults(func=cmd_merge)
    learn = commands.add_parser(
        "learn", help="stretch each case's seen latency range with repeated runs of the same code"
    )
    learn.add_argument("results", nargs="+", help="results files, or directories holding them")
    learn.add_argument("--into", default=str(baselines.DEFAULT_DIR), help="the baselines directory")
    learn.set_defaults(func=cmd_learn)
