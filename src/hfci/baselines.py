"""Baselines: one file per device fingerprint with every case's checks, duration and performance.

A refresh only moves what changed: a case's performance entry is rewritten when the new
measurement differs clearly from the stored one (or none is stored), its duration when it moved
both by a factor and by whole seconds. So an unchanged run leaves the file, and its diff, almost
untouched.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hfci import __version__
from hfci.bench import comparable, sig
from hfci.errors import HfciError
from hfci.results import Record, write_json_atomic

SCHEMA = "hfci-baseline/1"
DEFAULT_DIR = Path("baselines")
# A case's duration only balances shards: it is rewritten when it moved by more than this
# factor either way *and* by more than this many seconds. A sub-second case that took 0.4 s
# instead of 0.13 s (a cold cache, a busy neighbour) moves no shard boundary; 357 of the 1504
# cases moved beyond the factor alone in one refresh after an unchanged run.
DURATION_FACTOR = 3.0
DURATION_SLACK = 1.0


class BaselineError(HfciError):
    """A baseline file that cannot be used; never overwritten."""


def path_for(fingerprint: str, directory: Path = DEFAULT_DIR) -> Path:
    return Path(directory) / f"{fingerprint}.json"


def hardware_of(fingerprint: str) -> str:
    """The part of a fingerprint that names the hardware (versions cut off)."""
    return fingerprint.split("-torch", 1)[0]


def load(path: Path) -> dict[str, Any] | None:
    """A baseline file, or None if there is none. A corrupt or unknown file is an error."""
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(
            f"{path}: not a readable baseline ({error}); fix or delete it, hfci will not overwrite it"
        ) from None
    if (
        not isinstance(payload, dict)
        or payload.get("schema") != SCHEMA
        or not isinstance(payload.get("cases"), dict)
    ):
        found = payload.get("schema") if isinstance(payload, dict) else type(payload).__name__
        raise BaselineError(f"{path}: unknown baseline format {found!r}; expected schema {SCHEMA!r}")
    return payload


def find(fingerprint: str, directory: Path = DEFAULT_DIR) -> tuple[dict[str, Any] | None, str]:
    """The baseline to compare with, and a note saying which one (or why none).

    The exact fingerprint first; else the newest file of the same hardware with other library
    versions (that comparison is the point of a transformers upgrade); never other hardware.
    """
    exact = load(path_for(fingerprint, directory))
    if exact is not None:
        return exact, f"baseline {path_for(fingerprint, directory)}"
    same_hardware = sorted(
        (p for p in Path(directory).glob("*.json") if hardware_of(p.stem) == hardware_of(fingerprint)),
        key=lambda p: p.stat().st_mtime,
    )
    if same_hardware:
        chosen = same_hardware[-1]
        return load(chosen), f"baseline {chosen} (same hardware, other library versions)"
    others = sorted(p.stem for p in Path(directory).glob("*.json"))
    listed = f"; baselines exist only for: {', '.join(others)}" if others else ""
    return None, f"no baseline for {fingerprint}: comparison skipped{listed}"


def stale_perf(baseline: Mapping[str, Any] | None) -> int:
    """How many cases' performance this hfci's protocol cannot compare with."""
    entries = (baseline or {}).get("cases", {}).values()
    return sum(1 for entry in entries if entry.get("perf") and not comparable(entry["perf"]))


def key(record: Record) -> str:
    """A record's entry in the baseline: the case, with ``@runner`` for runners other than eager."""
    return record.case if record.runner == "eager" else f"{record.case}@{record.runner}"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def duration_moved(old: float | None, new: float) -> bool:
    """Whether a case's stored duration ``old`` is worth replacing with ``new`` seconds."""
    if not old:
        return True
    by_factor = not 1 / DURATION_FACTOR <= new / old <= DURATION_FACTOR
    return by_factor and abs(new - old) > DURATION_SLACK


def merge(
    baseline: Mapping[str, Any] | None,
    records: Iterable[Record],
    environment: Mapping[str, Any],
    fingerprint: str,
) -> dict[str, Any]:
    """The baseline updated with one run's records; cases the run did not touch are kept."""
    cases: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (baseline or {}).get("cases", {}).items()}
    durations: dict[str, float] = {}
    for record in records:
        entry = cases.setdefault(key(record), {})
        entry.setdefault("checks", {})
        entry["checks"] = {**entry["checks"], record.check: record.outcome}
        durations[key(record)] = durations.get(key(record), 0.0) + record.duration
        metrics = record.metrics or {}
        if metrics.get("perf") and metrics.get("changed", True):
            entry["perf"] = metrics["perf"]
        if metrics.get("ratio_range") and "perf" in entry:
            entry["perf"] = {**entry["perf"], "ratio_range": metrics["ratio_range"]}
    for case, seconds in durations.items():
        if duration_moved(cases[case].get("duration"), seconds):
            cases[case]["duration"] = sig(max(seconds, 0.001), 2)
    return {
        "schema": SCHEMA,
        "fingerprint": fingerprint,
        "environment": {
            **environment,
            "hfci": __version__,
            "date": _dt.date.today().isoformat(),
            "commit": _git_commit(),
        },
        "cases": dict(sorted(cases.items())),
    }


def write(path: Path, payload: Mapping[str, Any]) -> Path:
    """Atomically, with sorted keys; refuses to replace a file it cannot read."""
    load(path)
    return write_json_atomic(path, payload)


def new_failures(baseline: Mapping[str, Any] | None, records: Iterable[Record]) -> list[Record]:
    """Checks that passed in the baseline and fail now (regressions are reported on their own)."""
    if not baseline:
        return []
    cases = baseline.get("cases", {})
    return [
        r
        for r in records
        if r.outcome == "failed"
        and r.check != "benchmark"
        and cases.get(key(r), {}).get("checks", {}).get(r.check) == "passed"
    ]


def newly_fixed(baseline: Mapping[str, Any] | None, records: Iterable[Record]) -> list[Record]:
    """Checks that failed in the baseline and pass now."""
    if not baseline:
        return []
    cases = baseline.get("cases", {})
    return [
        r
        for r in records
        if r.outcome in ("passed", "xpassed")
        and cases.get(key(r), {}).get("checks", {}).get(r.check) in ("failed", "xfailed")
    ]
