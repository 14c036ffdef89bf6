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
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hfci.errors import HfciError

__all__ = [
    "CHECKS",
    "OUTCOMES",
    "SCHEMA",
    "Outcome",
    "Record",
    "ResultsError",
    "ResultsFile",
    "case_durations",
    "read_json",
    "read_results",
    "read_results_file",
    "results_files",
    "summary",
    "verdicts",
    "write_json_atomic",
    "write_results",
]

SCHEMA = "hfci-results/1"


class Outcome(str, Enum):
    """What one check of one case came to: pytest's outcomes, with xfail's two made explicit."""

    PASSED = "passed"
    FAILED = "failed"
    XFAILED = "xfailed"  # a known failure (models.toml) that failed as expected
    XPASSED = "xpassed"  # a known failure that passed: its entry can go
    SKIPPED = "skipped"
    CRASHED = "crashed"  # the check killed its worker process (a signal, an exit, the memory ceiling)

    def __str__(self) -> str:
        return self.value

    @property
    def failing(self) -> bool:
        """Whether the check found something wrong: it failed, or it crashed."""
        return self in (Outcome.FAILED, Outcome.CRASHED)


OUTCOMES = tuple(Outcome)

# Every check, in the order a case runs them (and reports list them): the cheap verdicts first, so
# a case that cannot even run forward fails fast; parity checks last, as they build extra models.
CHECKS = (
    "forward",
    "determinism",
    "save_load",
    "padding",
    "benchmark",
    "generate",
    "cache",
    "training",
    "pipeline",
    "device_parity",
    "parity",
)


class ResultsError(HfciError):
    """A results file or directory that is missing, corrupt or of another schema."""


@dataclass(frozen=True)
class Record:
    """One check of one case on one device: its outcome, duration, reason and measurements."""

    case: str
    model_type: str
    head: str
    device: str
    check: str
    outcome: Outcome
    duration: float
    reason: str = ""
    category: str = ""
    tier: str = ""
    metrics: dict[str, Any] | None = None
    runner: str = "eager"
    # What an expected failure raised (its reason is the known-failure entry's).
    raised: str | None = None

    def __post_init__(self) -> None:
        # Files and callers hand in plain strings; one vocabulary from here on.
        object.__setattr__(self, "outcome", Outcome(self.outcome))


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

    ``complete`` is false for a partial write during the run (``--results-every``), or for a run
    stopped early.
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
            raise ResultsError(f"no such results file or directory: {path}")
    return found


@dataclass
class ResultsFile:
    """One results file: the run's device and fingerprint, whether it ran to the end, its records."""

    path: Path
    device: str
    fingerprint: str
    complete: bool
    records: list[Record]
    meta: dict[str, Any] = field(default_factory=dict)


def read_json(path: str | Path, error: type[HfciError], kind: str) -> Any:
    """A JSON file's contents; a missing or unreadable one is one ``error`` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such {kind} file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{path}: not a readable JSON file ({problem})") from None


def read_results_file(path: Path) -> ResultsFile:
    """Read and validate one results file; anything unusable is one ``ResultsError`` naming it."""
    payload = read_json(path, ResultsError, "results")
    if not isinstance(payload, dict):
        raise ResultsError(f"{path}: expected a JSON object, found {type(payload).__name__}")
    if payload.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: unknown schema {payload.get('schema')!r}; expected {SCHEMA!r}")
    rows = payload.get("records")
    if not isinstance(rows, list):
        raise ResultsError(f"{path}: a results file without a 'records' list")
    records = []
    for row in rows:
        try:
            records.append(Record(**{"device": payload.get("device"), **row}))
        except (TypeError, ValueError) as error:
            raise ResultsError(f"{path}: malformed record {row!r} ({error})") from None
    device = str(payload.get("device") or (records[0].device if records else "?"))
    meta = {k: v for k, v in payload.items() if k not in ("records", "schema", "complete")}
    # A partial write, or a run stopped early: what it holds is true, but its selection is not all there.
    complete = payload.get("complete", True) is not False
    return ResultsFile(Path(path), device, str(payload.get("fingerprint", "")), complete, records, meta)


def read_results(path: Path) -> list[Record]:
    """The records of one results file (see :func:`read_results_file`)."""
    return read_results_file(path).records


def case_durations(records: Iterable[Record]) -> dict[str, float]:
    """Seconds per case: the sum of its checks' durations."""
    totals: dict[str, float] = defaultdict(float)
    for record in records:
        totals[record.case] += record.duration
    return dict(totals)


def verdicts(records: Iterable[Record], kind: str) -> list[tuple[Record, str]]:
    """(record, detail) of every performance verdict of one kind ('regression', 'improvement')."""
    return [
        (r, v["detail"]) for r in records for v in (r.metrics or {}).get("verdicts", []) if v["kind"] == kind
    ]


def summary(
    records: Sequence[Record],
    slowest: int = 10,
    new_failures: Sequence[Record] = (),
    lost_coverage: Sequence[Record] = (),
) -> str:
    """New failures, lost coverage and regressions first, then failures, fixes, counts, skip
    reasons, slowest cases."""
    lines: list[str] = []
    if new_failures:
        lines.append(f"NEW FAILURES against the baseline ({len(new_failures)}):")
        lines += [f"  {r.case} [{r.device}] {r.check}: {r.reason[:160]}" for r in new_failures[:50]]
    if lost_coverage:
        lines.append(
            f"LOST COVERAGE against the baseline ({len(lost_coverage)}): passed there, "
            "skipped or expected to fail now"
        )
        lines += [
            f"  {r.case} [{r.device}] {r.check}: {r.outcome}: {r.reason[:140]}" for r in lost_coverage[:50]
        ]
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
    crashed = [r for r in records if r.outcome == Outcome.CRASHED]
    if crashed:
        lines.append(
            f"CRASHED ({len(crashed)}): the check killed its worker; its case's other checks did not run"
        )
        lines += [f"  {r.case} [{r.device}] {r.check}: {r.reason[:160]}" for r in crashed[:50]]
    failed = [r for r in records if r.outcome == Outcome.FAILED]
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
        lines += [f"  {seconds:7.2f}s  {case}  ({_costliest(records, case)})" for case, seconds in top]
    return "\n".join(lines)


def _costliest(records: Iterable[Record], case: str) -> str:
    """Where a case's time went: its checks, the costliest first, those over a tenth of a second."""
    checks = sorted(((r.duration, r.check) for r in records if r.case == case), reverse=True)
    shown = [f"{check} {seconds:.2f}s" for seconds, check in checks if seconds >= 0.1][:3]
    return ", ".join(shown) or "no check over 0.1 s"
