"""Results: the machine-readable record of a model run, and the summary people read.

One record per (case, device, check): outcome, duration, reason. The matrix balances shards on
these durations; baselines and reports are built from them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hfci.catalog import CatalogError

SCHEMA = "hfci-results/1"
OUTCOMES = ("passed", "failed", "xfailed", "xpassed", "skipped")


@dataclass(frozen=True)
class Record:
    case: str
    model_type: str
    head: str
    device: str
    check: str
    outcome: str
    duration: float
    reason: str = ""
    category: str = ""
    tier: str = ""
    metrics: dict[str, Any] | None = None
    runner: str = "eager"


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write sorted, stable JSON through a temporary file and a rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1, sort_keys=True, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp makes the file private; a results or baseline file is meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_results(
    directory: Path, device: str, records: Sequence[Record], meta: Mapping[str, Any], complete: bool = True
) -> Path:
    """``<directory>/results-<device>.json`` with every record of the run, sorted.

    ``complete`` is false for a checkpoint written during the run, or for a run stopped early.
    """
    ordered = sorted(records, key=lambda r: (r.case, r.runner, r.check))
    payload = {
        "schema": SCHEMA,
        "device": device,
        "complete": complete,
        **meta,
        "records": [
            {k: (round(v, 4) if k == "duration" else v) for k, v in asdict(r).items() if v is not None}
            for r in ordered
        ],
    }
    return write_json_atomic(directory / f"results-{device}.json", payload)


def results_files(paths: Iterable[str | Path]) -> list[Path]:
    """Results files: files as given, directories searched for ``results-*.json``.

    Directories are searched recursively because download-artifact puts each shard's artifact in
    a folder of its own.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(path.rglob("results-*.json"))
        elif path.is_file():
            found.append(path)
        else:
            raise CatalogError(f"no such results file or directory: {path}")
    return found


def read_results(path: Path) -> list[Record]:
    payload = json.loads(path.read_text(encoding="utf-8"))
    if payload.get("schema") != SCHEMA:
        raise ValueError(f"{path}: unknown schema {payload.get('schema')!r}; expected {SCHEMA!r}")
    return [Record(**r) for r in payload["records"]]


def case_durations(records: Iterable[Record]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for record in records:
        totals[record.case] += record.duration
    return dict(totals)


def verdicts(records: Iterable[Record], kind: str) -> list[tuple[Record, str]]:
    """(record, detail) of every performance verdict of one kind ('regression', 'improvement')."""
    return [
        (r, v["detail"]) for r in records for v in (r.metrics or {}).get("verdicts", []) if v["kind"] == kind
    ]


def summary(records: Sequence[Record], slowest: int = 10, new_failures: Sequence[Record] = ()) -> str:
    """New failures and regressions first, then failures, fixes, counts, skip reasons, slowest cases."""
    lines: list[str] = []
    if new_failures:
        lines.append(f"NEW FAILURES against the baseline ({len(new_failures)}):")
        lines += [f"  {r.case} [{r.device}] {r.check}: {r.reason[:160]}" for r in new_failures[:50]]
    regressions = verdicts(records, "regression")
    if regressions:
        lines.append(f"REGRESSIONS ({len(regressions)}):")
        lines += [f"  {r.case} [{r.device}] {detail}" for r, detail in regressions[:50]]
    improvements = verdicts(records, "improvement")
    if improvements:
        lines.append(f"improvements ({len(improvements)}):")
        lines += [f"  {r.case} [{r.device}] {detail}" for r, detail in improvements[:20]]
    disturbed = verdicts(records, "disturbed")
    if disturbed:
        lines.append(
            f"not compared ({len(disturbed)}): their baseline was measured on a busy machine; "
            "a refresh replaces it"
        )
    failed = [r for r in records if r.outcome == "failed"]
    if failed:
        lines.append(f"FAILED ({len(failed)}):")
        lines += [f"  {r.case} [{r.device}] {r.check}: {r.reason[:160]}" for r in failed[:50]]
        if len(failed) > 50:
            lines.append(f"  ... and {len(failed) - 50} more (see the results file)")
    fixed = [r for r in records if r.outcome == "xpassed"]
    if fixed:
        lines.append(f"FIXED known failures ({len(fixed)}), remove their models.toml entries:")
        lines += [f"  {r.case} [{r.device}] {r.check}" for r in fixed[:50]]
    counts = Counter(r.outcome for r in records)
    cases = {r.case for r in records}
    lines.append(
        f"{len(cases)} cases, {len(records)} checks: "
        + ", ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)
    )
    reasons = Counter(r.reason for r in records if r.outcome == "skipped")
    if reasons:
        lines.append("skipped, by reason:")
        lines += [f"  {n:5d}  {reason[:140]}" for reason, n in reasons.most_common(10)]
    durations = case_durations(records)
    if durations:
        lines.append(f"slowest {min(slowest, len(durations))} cases:")
        top = sorted(durations.items(), key=lambda kv: -kv[1])[:slowest]
        lines += [f"  {seconds:7.2f}s  {case}" for case, seconds in top]
    return "\n".join(lines)
