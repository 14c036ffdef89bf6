"""Baselines: one file per device fingerprint with every case's checks, duration and performance.

A refresh only moves what changed: a case's performance entry is rewritten when the new
measurement differs clearly from the stored one (or none is stored), its duration when it moved
both by a factor and by whole seconds. So an unchanged run leaves the file, and its diff, almost
untouched.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfci import __version__
from hfci.bench import comparable, sig
from hfci.errors import HfciError
from hfci.results import Outcome, Record, read_json, write_json_atomic

__all__ = [
    "DELTA_SCHEMA",
    "SCHEMA",
    "Baseline",
    "BaselineError",
    "CaseEntry",
    "Delta",
    "delta",
    "delta_path",
    "digest",
    "find",
    "key",
    "load",
    "load_delta",
    "lost_coverage",
    "merge",
    "merge_sources",
    "new_failures",
    "newly_fixed",
    "path_for",
    "stale_perf",
    "write",
    "write_delta",
]

SCHEMA = "hfci-baseline/1"
DELTA_SCHEMA = "hfci-baseline-delta/1"
DELTA_SUFFIX = ".delta.json"
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
    """Where the baseline of a fingerprint lives."""
    return Path(directory) / f"{fingerprint}.json"


def hardware_of(fingerprint: str) -> str:
    """The part of a fingerprint that names the hardware (versions cut off)."""
    return fingerprint.split("-torch", 1)[0]


@dataclass
class CaseEntry:
    """One case's line in a baseline: its checks' outcomes, its duration, its performance.

    Keys hfci does not know (a hand-added note) are kept in ``extra`` and written back.
    """

    checks: dict[str, str] = field(default_factory=dict)
    duration: float | None = None
    perf: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> CaseEntry:
        """An entry as the file holds it."""
        known = {"checks", "duration", "perf"}
        return cls(
            checks=dict(entry.get("checks") or {}),
            duration=entry.get("duration"),
            perf=entry.get("perf"),
            extra={k: v for k, v in entry.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The entry as the file holds it."""
        entry: dict[str, Any] = {**self.extra, "checks": dict(self.checks)}
        if self.duration is not None:
            entry["duration"] = self.duration
        if self.perf is not None:
            entry["perf"] = self.perf
        return entry


@dataclass
class Baseline:
    """A baseline file: the fingerprint it was measured on, that machine's environment, its cases.

    Cases are keyed by :func:`key`: ``<model type>/<head>``, ``@<runner>`` for runners other
    than eager.
    """

    fingerprint: str
    environment: dict[str, Any] = field(default_factory=dict)
    cases: dict[str, CaseEntry] = field(default_factory=dict)
    # The transformers sources of the model types measured (``hfci.impact``), what
    # ``--changed-since`` compares with; None in a file written before hfci recorded them.
    sources: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, payload: Any, where: str | Path = "baseline") -> Baseline:
        """Validate a parsed file; anything else is one ``BaselineError`` naming ``where``."""
        if (
            not isinstance(payload, dict)
            or payload.get("schema") != SCHEMA
            or not isinstance(payload.get("cases"), dict)
        ):
            found = payload.get("schema") if isinstance(payload, dict) else type(payload).__name__
            raise BaselineError(f"{where}: unknown baseline format {found!r}; expected schema {SCHEMA!r}")
        return cls(
            fingerprint=str(payload.get("fingerprint", Path(where).stem)),
            environment=dict(payload.get("environment") or {}),
            cases={k: CaseEntry.from_dict(v or {}) for k, v in payload["cases"].items()},
            sources=payload.get("sources") if isinstance(payload.get("sources"), dict) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The file's contents, cases sorted so that a refresh is a small diff."""
        payload = {
            "schema": SCHEMA,
            "fingerprint": self.fingerprint,
            "environment": dict(self.environment),
            "cases": {k: self.cases[k].to_dict() for k in sorted(self.cases)},
        }
        if self.sources is not None:
            payload["sources"] = self.sources
        return payload

    @property
    def device(self) -> str:
        """The device it was measured on: its environment says, else its fingerprint."""
        return str(self.environment.get("device") or hardware_of(self.fingerprint).split("-")[0])

    def perf(self, case_key: str) -> dict[str, Any] | None:
        """The stored performance of a case, if any."""
        entry = self.cases.get(case_key)
        return entry.perf if entry is not None else None

    def outcome(self, case_key: str, check: str) -> str | None:
        """The stored outcome of one check of a case, if any."""
        entry = self.cases.get(case_key)
        return entry.checks.get(check) if entry is not None else None

    def perfs(self) -> Iterator[dict[str, Any]]:
        """Every stored performance entry."""
        return (entry.perf for entry in self.cases.values() if entry.perf)


def load(path: Path) -> Baseline | None:
    """A baseline file, or None if there is none. A corrupt or unknown file is an error."""
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(
            f"{path}: not a readable baseline ({error}); fix or delete it, hfci will not overwrite it"
        ) from None
    return Baseline.from_dict(payload, path)


def digest(path: Path) -> str | None:
    """The sha256 of a file's bytes (what a delta names as its ``base``), or None if there is none."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def shard_tag(shard: str | None) -> str:
    """A shard as a delta file's name holds it: ``3/8`` -> ``3-of-8``; a whole run is ``all``."""
    return shard.replace("/", "-of-") if shard else "all"


def _shard_numbers(shard: str) -> tuple[int, int] | None:
    index, _, count = shard.partition("/")
    if not (index.isdigit() and count.isdigit()) or not 1 <= int(index) <= int(count):
        return None
    return int(index), int(count)


@dataclass
class Delta:
    """What one run (a shard, or a whole run) measured on one fingerprint: only its own cases.

    ``base`` is the sha256 of the baseline file the run compared with and started from (None:
    there was none); ``complete`` is false for a run that stopped early, whose cases a refresh
    does not take. The entries are :func:`merge`'s, computed against that base.
    """

    fingerprint: str
    environment: dict[str, Any] = field(default_factory=dict)
    base: str | None = None
    shard: str | None = None
    complete: bool = True
    cases: dict[str, CaseEntry] = field(default_factory=dict)
    sources: dict[str, Any] | None = None

    @property
    def tag(self) -> str:
        """``3-of-8`` for shard 3/8, ``all`` for a run of the whole selection."""
        return shard_tag(self.shard)

    @property
    def shard_numbers(self) -> tuple[int, int] | None:
        """(index, count) of its shard; None for a whole run."""
        return _shard_numbers(self.shard) if self.shard else None

    @property
    def device(self) -> str:
        """The device it was measured on, as :attr:`Baseline.device` tells it."""
        return Baseline(self.fingerprint, self.environment).device

    def to_dict(self) -> dict[str, Any]:
        """The file's contents."""
        return {
            "schema": DELTA_SCHEMA,
            "fingerprint": self.fingerprint,
            "environment": dict(self.environment),
            "base": self.base,
            "shard": self.shard,
            "complete": self.complete,
            "cases": {k: self.cases[k].to_dict() for k in sorted(self.cases)},
            **({"sources": self.sources} if self.sources is not None else {}),
        }

    @classmethod
    def from_dict(cls, payload: Any, where: str | Path = "delta") -> Delta:
        """Validate a parsed delta; anything else is one ``BaselineError`` naming ``where``."""
        if isinstance(payload, dict) and payload.get("schema") == SCHEMA:
            raise BaselineError(
                f"{where}: a baseline, not a delta: shards upload deltas written with --baseline-delta"
            )
        if not isinstance(payload, dict) or payload.get("schema") != DELTA_SCHEMA:
            found = payload.get("schema") if isinstance(payload, dict) else type(payload).__name__
            raise BaselineError(
                f"{where}: not a baseline delta (schema {found!r}); expected {DELTA_SCHEMA!r}"
            )

        def bad(name: str, expected: str) -> BaselineError:
            return BaselineError(f"{where}: {name} is {payload.get(name)!r}; expected {expected}")

        fingerprint, shard, base = payload.get("fingerprint"), payload.get("shard"), payload.get("base")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise bad("fingerprint", "one device fingerprint (a delta holds one machine's cases)")
        if shard is not None and not (isinstance(shard, str) and _shard_numbers(shard)):
            raise bad("shard", "INDEX/COUNT such as '3/8', or null for a whole run")
        if base is not None and not isinstance(base, str):
            raise bad("base", "the sha256 of the baseline it started from, or null")
        if not isinstance(payload.get("complete"), bool):
            raise bad("complete", "true or false")
        cases = payload.get("cases")
        if not isinstance(cases, dict) or not all(isinstance(v, dict) for v in cases.values()):
            raise BaselineError(f"{where}: 'cases' must map each case to its entry")
        if not isinstance(payload.get("environment") or {}, dict):
            raise bad("environment", "an object")
        return cls(
            fingerprint=fingerprint,
            environment=dict(payload.get("environment") or {}),
            base=base,
            shard=shard,
            complete=payload["complete"],
            cases={k: CaseEntry.from_dict(v) for k, v in cases.items()},
            sources=payload.get("sources") if isinstance(payload.get("sources"), dict) else None,
        )


def delta_path(directory: Path, fingerprint: str, shard: str | None) -> Path:
    """``<directory>/<fingerprint>.<tag>.delta.json``: one file per fingerprint and shard."""
    return Path(directory) / f"{fingerprint}.{shard_tag(shard)}{DELTA_SUFFIX}"


def load_delta(path: Path) -> Delta:
    """One delta file, checked; a missing, unreadable or foreign file is one ``BaselineError``.

    A name of the form :func:`delta_path` writes must agree with the contents: a file named for
    one machine that holds another's cases was put together by hand and is refused.
    """
    found = Delta.from_dict(read_json(path, BaselineError, "delta"), path)
    name = Path(path).name
    if name.endswith(DELTA_SUFFIX):
        named, _, tag = name.removesuffix(DELTA_SUFFIX).rpartition(".")
        if named and (named, tag) != (found.fingerprint, found.tag):
            raise BaselineError(
                f"{path}: its name says fingerprint {named!r} shard {tag!r}, its contents "
                f"{found.fingerprint!r} shard {found.tag!r}: a delta holds one machine's cases"
            )
    return found


def find(fingerprint: str, directory: Path = DEFAULT_DIR) -> tuple[Baseline | None, str]:
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


def stale_perf(baseline: Baseline | None) -> int:
    """How many cases' performance this hfci's protocol cannot compare with."""
    return sum(1 for perf in (baseline.perfs() if baseline else ()) if not comparable(perf))


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


def merge_sources(*tables: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Recorded sources (``hfci.impact``: model types' hashes, files' digests) folded in order, a
    later table's entries replacing an earlier's; None when none is given."""
    present = [table for table in tables if table]
    if not present:
        return None
    return {
        key: dict(sorted({k: v for table in present for k, v in (table.get(key) or {}).items()}.items()))
        for key in ("types", "files")
    }


def merge(
    baseline: Baseline | None,
    records: Iterable[Record],
    environment: Mapping[str, Any],
    fingerprint: str,
    sources: Mapping[str, Any] | None = None,
) -> Baseline:
    """The baseline updated with one run's records (and the sources of the model types it ran);
    cases the run did not touch are kept."""
    cases = {
        k: dataclasses.replace(v, checks=dict(v.checks))
        for k, v in (baseline.cases if baseline else {}).items()
    }
    durations: dict[str, float] = {}
    for record in records:
        entry = cases.setdefault(key(record), CaseEntry())
        entry.checks[record.check] = str(record.outcome)
        durations[key(record)] = durations.get(key(record), 0.0) + record.duration
        metrics = record.metrics or {}
        if metrics.get("perf") and metrics.get("changed", True):
            entry.perf = metrics["perf"]
        if metrics.get("ratio_range") and entry.perf is not None:
            entry.perf = {**entry.perf, "ratio_range": metrics["ratio_range"]}
    for case, seconds in durations.items():
        if duration_moved(cases[case].duration, seconds):
            cases[case].duration = sig(max(seconds, 0.001), 2)
    environment = {
        **environment,
        "hfci": __version__,
        "date": _dt.date.today().isoformat(),
        "commit": _git_commit(),
    }
    return Baseline(
        fingerprint,
        environment,
        dict(sorted(cases.items())),
        merge_sources(baseline.sources if baseline else None, sources),
    )


def delta(
    baseline: Baseline | None,
    records: Iterable[Record],
    environment: Mapping[str, Any],
    fingerprint: str,
    *,
    base: str | None,
    shard: str | None,
    complete: bool,
    sources: Mapping[str, Any] | None = None,
) -> Delta:
    """What one run measured, as a :class:`Delta` against ``baseline`` (whose bytes hash to ``base``).

    Each entry is :func:`merge`'s, so its perf and duration are rewritten only where they moved
    from the baseline's; the entries of cases the run did not measure are left out, so that a
    shard's file cannot carry stale copies of other shards' cases.
    """
    records = list(records)
    merged = merge(baseline, records, environment, fingerprint)
    measured = sorted({key(r) for r in records})
    cases = {k: merged.cases[k] for k in measured}
    return Delta(fingerprint, merged.environment, base, shard, complete, cases, merge_sources(sources))


def write_delta(
    directory: Path,
    target: Path,
    records: Iterable[Record],
    environment: Mapping[str, Any],
    fingerprint: str,
    *,
    shard: str | None,
    complete: bool,
    sources: Mapping[str, Any] | None = None,
) -> Path:
    """What a run measured against the baseline file ``target``, written (atomically) to
    ``directory`` under :func:`delta_path`'s name; ``target`` itself is left untouched."""
    found = delta(
        load(target),
        records,
        environment,
        fingerprint,
        base=digest(target),
        shard=shard,
        complete=complete,
        sources=sources,
    )
    return write_json_atomic(delta_path(directory, fingerprint, shard), found.to_dict())


def write(path: Path, baseline: Baseline) -> Path:
    """Atomically, with sorted keys; refuses to replace a file it cannot read."""
    load(path)
    return write_json_atomic(path, baseline.to_dict())


def new_failures(baseline: Baseline | None, records: Iterable[Record]) -> list[Record]:
    """Checks that passed in the baseline and fail now (regressions are reported on their own)."""
    if not baseline:
        return []
    return [
        r
        for r in records
        if r.outcome.failing and r.check != "benchmark" and baseline.outcome(key(r), r.check) == "passed"
    ]


def lost_coverage(baseline: Baseline | None, records: Iterable[Record]) -> list[Record]:
    """Checks that passed in the baseline and now skip or are expected to fail: nothing fails,
    yet the run proves less than the baseline's did (a dependency gone, a new entry, a check
    that stopped applying)."""
    if not baseline:
        return []
    return [
        r
        for r in records
        if r.outcome in (Outcome.SKIPPED, Outcome.XFAILED)
        and r.check != "benchmark"
        and baseline.outcome(key(r), r.check) == "passed"
    ]


def newly_fixed(baseline: Baseline | None, records: Iterable[Record]) -> list[Record]:
    """Checks that failed in the baseline and pass now."""
    if not baseline:
        return []
    return [
        r
        for r in records
        if r.outcome in (Outcome.PASSED, Outcome.XPASSED)
        and baseline.outcome(key(r), r.check) in ("failed", "xfailed")
    ]
