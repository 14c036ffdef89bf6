"""``hfci baselines merge``: fold the baseline files of several shard jobs into one per device."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hfci import baselines


def baseline_files(paths: Iterable[str | Path]) -> list[Path]:
    """The baseline files named, or found one level under the directories named."""
    found: list[Path] = []
    for path in map(Path, paths):
        found += sorted(path.rglob("*.json")) if path.is_dir() else [path]
    return found


def merge_into(directory: Path, sources: Iterable[Path]) -> list[Path]:
    """Each source's cases into ``directory/<fingerprint>.json``; cases no source has are kept."""
    written: dict[Path, dict[str, Any]] = {}
    for source in sources:
        incoming = baselines.load(source)
        if incoming is None:
            continue
        target = baselines.path_for(incoming["fingerprint"], directory)
        current = written.get(target) or baselines.load(target) or {"cases": {}}
        cases = {**current["cases"], **incoming["cases"]}
        written[target] = {**incoming, "cases": dict(sorted(cases.items()))}
    return [baselines.write(target, payload) for target, payload in written.items()]


def cmd_merge(args: argparse.Namespace) -> int:
    sources = baseline_files(args.sources)
    if not sources:
        raise baselines.BaselineError(f"no baseline files under {', '.join(args.sources)}")
    for path in merge_into(Path(args.into), sources):
        print(f"merged: {path}")
    return 0


def add_command(sub: Any) -> None:
    """Register ``hfci baselines``."""
    parser = sub.add_parser("baselines", help="merge baseline files written by shard jobs")
    commands = parser.add_subparsers(dest="baselines_command", required=True)
    merge = commands.add_parser("merge", help="merge shard baselines into one file per fingerprint")
    merge.add_argument("sources", nargs="+", help="baseline files, or directories holding them")
    merge.add_argument("--into", default=str(baselines.DEFAULT_DIR), help="the baselines directory")
    merge.set_defaults(func=cmd_merge)
