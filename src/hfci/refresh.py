"""A baseline refresh: the shards' deltas folded into the committed baselines and durations.

Every shard job of a refresh uploads a delta (``--update-baselines --baseline-delta DIR``)
holding only the cases it measured. Folding takes each case from the one delta that measured it
and keeps every other case as committed, so no shard's stale copy of another's cases can land,
and a hand edit made meanwhile survives. :func:`plan` and :func:`fold` are pure (plain data in
and out); :func:`read` and :func:`write` are the only functions here that touch files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hfci import baselines
from hfci.baselines import Baseline, BaselineError, CaseEntry, Delta, merge_sources
from hfci.matrix import Durations, read_durations, write_durations

__all__ = [
    "FingerprintPlan",
    "Plan",
    "Refresh",
    "RefreshError",
    "delta_files",
    "fold",
    "fold_durations",
    "plan",
    "read",
    "refresh",
    "write",
]


class RefreshError(BaselineError):
    """Deltas that cannot be folded as they are (a case claimed twice, a shard missing under
    ``--require-all``); nothing is written."""


@dataclass(frozen=True)
class Source:
    """A delta and the file it came from (what every message names)."""

    path: Path
    delta: Delta

    @property
    def shard(self) -> str:
        return f"shard {self.delta.shard}" if self.delta.shard else "the whole run"


@dataclass
class FingerprintPlan:
    """One fingerprint's part of a refresh: which delta gives each case, and what is left out."""

    fingerprint: str
    taken: list[Source] = field(default_factory=list)
    skipped: list[Source] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    expected: int | None = None

    @property
    def owner(self) -> dict[str, Source]:
        """Each measured case and the delta it comes from."""
        return {case: source for source in self.taken for case in source.delta.cases}

    def problems(self) -> list[str]:
        """Shards that did not complete, and shards ``--expect-shards`` wanted that never came."""
        lines = [f"skipped: {s.path} ({s.shard} did not complete)" for s in self.skipped]
        if self.missing:
            listed = ", ".join(f"{i}/{self.expected}" for i in self.missing)
            lines.append(f"missing: shard {listed} (no delta)")
        return lines


@dataclass
class Plan:
    """A checked refresh: per fingerprint, the deltas whose cases it takes."""

    fingerprints: dict[str, FingerprintPlan] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """No complete delta at all (a cancelled run): nothing to fold."""
        return not any(p.taken for p in self.fingerprints.values())


def plan(sources: Sequence[Source], expect_shards: int | None = None, require_all: bool = False) -> Plan:
    """Check the deltas against each other and decide what each contributes.

    An incomplete delta contributes nothing: a run stopped early may have measured a case on a
    machine that was being torn down. Two complete deltas of one fingerprint claiming the same
    case is an error: one of them ran the wrong selection, and which figures are right is not
    something a merge can decide.

    A missing or incomplete shard is by default named and the completed shards' cases are taken
    anyway: a refresh that drops seven good shards because one runner died loses more than it
    protects, and the cases of the lost shard keep their committed entries. ``require_all``
    makes it an error instead.
    """
    result = Plan()
    for source in sources:
        delta = source.delta
        fp = result.fingerprints.setdefault(delta.fingerprint, FingerprintPlan(delta.fingerprint))
        numbers = delta.shard_numbers
        if expect_shards is not None and numbers is not None and numbers[1] != expect_shards:
            raise RefreshError(
                f"{source.path}: {source.shard}, but --expect-shards {expect_shards}; "
                f"valid shards are 1/{expect_shards} to {expect_shards}/{expect_shards}"
            )
        (fp.taken if delta.complete else fp.skipped).append(source)
    for fp in result.fingerprints.values():
        seen: dict[str, Source] = {}
        for source in fp.taken:
            for case in source.delta.cases:
                if case in seen:
                    raise RefreshError(
                        f"{seen[case].path} and {source.path} both measured {case!r} on "
                        f"{fp.fingerprint}: each case must come from one shard (were they planned "
                        "on different durations or selections?); nothing written"
                    )
                seen[case] = source
        # Without --expect-shards, each delta's own "K/N" says how many shards there were: a
        # shard that uploaded nothing (its runner died) is named all the same.
        counts = [s.delta.shard_numbers[1] for s in (*fp.taken, *fp.skipped) if s.delta.shard_numbers]
        expected = expect_shards if expect_shards is not None else max(counts, default=None)
        if expected is not None:
            fp.expected = expected
            present = {s.delta.shard_numbers[0] for s in (*fp.taken, *fp.skipped) if s.delta.shard_numbers}
            fp.missing = [i for i in range(1, expected + 1) if i not in present]
    if require_all:
        problems = [f"{fp}: {line}" for fp, p in result.fingerprints.items() for line in p.problems()]
        if problems:
            raise RefreshError(
                "--require-all: not every shard completed; nothing written:\n  " + "\n  ".join(problems)
            )
    return result


def fold(current: Baseline | None, fingerprint_plan: FingerprintPlan) -> Baseline | None:
    """The committed baseline with each measured case replaced by its delta's entry.

    Cases no delta measured keep their committed entries. Keys hfci does not write (a note added
    by hand) are the committed file's to keep: the delta's copy of them is as old as its base.
    None when nothing was measured and nothing was committed.
    """
    owner = fingerprint_plan.owner
    if not owner:
        return current
    cases = dict(current.cases) if current else {}
    for case, source in owner.items():
        entry = source.delta.cases[case]
        kept = cases[case].extra if case in cases else entry.extra
        cases[case] = dataclasses.replace(entry, checks=dict(entry.checks), extra=dict(kept))
    # The latest shard's environment (they differ only in date and commit): the file's header
    # says when it was last measured.
    newest = max(fingerprint_plan.taken, key=lambda s: s.delta.shard_numbers or (0, 0))
    # The recorded sources of the types measured (``hfci.impact``) replace the committed ones.
    taken = sorted(fingerprint_plan.taken, key=lambda s: s.delta.shard_numbers or (0, 0))
    sources = merge_sources(current.sources if current else None, *(s.delta.sources for s in taken))
    return Baseline(
        fingerprint_plan.fingerprint, dict(newest.delta.environment), dict(sorted(cases.items())), sources
    )


def fold_durations(durations: Mapping[tuple[str, str], float], result: Plan) -> Durations:
    """The planner's durations with each measured eager case's duration, on its delta's device.

    Only eager entries: ``hfci matrix`` keys durations by (case, device), and a runner's entry
    (``case@sdpa``) is not a case it plans. Cases not measured keep their recorded seconds.
    """
    folded = dict(durations)
    for fp in sorted(result.fingerprints):
        for case, source in sorted(result.fingerprints[fp].owner.items()):
            entry: CaseEntry = source.delta.cases[case]
            if "@" not in case and entry.duration is not None:
                folded[case, source.delta.device] = entry.duration
    return folded


# -- files -------------------------------------------------------------------------------------


def delta_files(paths: Iterable[str | Path]) -> list[Path]:
    """Delta files: files as given, directories searched recursively for ``*.delta.json``.

    A full baseline file in a directory is an error rather than something to skip: it is what
    shard jobs uploaded before deltas, and skipping it would silently refresh nothing.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(path.rglob(f"*{baselines.DELTA_SUFFIX}"))
            for other in sorted(path.rglob("*.json")):
                if not other.name.endswith(baselines.DELTA_SUFFIX) and _is_baseline(other):
                    baselines.load_delta(other)  # raises: a baseline, not a delta
        elif path.is_file():
            found.append(path)
        else:
            raise RefreshError(f"no such delta file or directory: {path}")
    return found


def _is_baseline(path: Path) -> bool:
    try:
        baselines.load(path)
    except BaselineError:
        return False  # results files and the like share the artifact; they are not ours to judge
    return True


def read(paths: Iterable[str | Path]) -> list[Source]:
    """Every delta under ``paths``, each checked (see :func:`hfci.baselines.load_delta`)."""
    return [Source(path, baselines.load_delta(path)) for path in delta_files(paths)]


@dataclass
class Refresh:
    """A folded refresh, ready to write: new baselines, new durations, and what to tell people."""

    plan: Plan
    baselines: dict[Path, Baseline] = field(default_factory=dict)
    durations: tuple[Path, Durations] | None = None
    changed: dict[str, int] = field(default_factory=dict)
    # Deltas measured against another version of their baseline than the one folded into.
    moved: dict[str, list[Source]] = field(default_factory=dict)

    def summary(self) -> list[str]:
        """Per fingerprint: the cases updated, from which shards; skipped and missing shards."""
        if self.plan.empty and not self.plan.fingerprints:
            return ["no delta files: nothing to fold"]
        lines = []
        for name, fp in sorted(self.plan.fingerprints.items()):
            taken = sorted(fp.taken, key=lambda s: s.delta.shard_numbers or (0, 0))
            shards = ", ".join(s.shard for s in taken) or "no complete shard"
            lines.append(
                f"{name}: {len(fp.owner)} cases re-measured ({self.changed.get(name, 0)} changed) from {shards}"
            )
            lines += [f"  {line}" for line in fp.problems()]
            if self.moved.get(name):
                lines.append(
                    f"  note: {', '.join(s.shard for s in self.moved[name])} started from another version "
                    "of the baseline (it moved meanwhile); only their own cases are replaced"
                )
        if self.plan.empty:
            lines.append("no complete delta: nothing to fold (a cancelled run?)")
        elif self.durations is not None:
            lines.append(f"durations: measured cases folded into {self.durations[0]}")
        return lines


def refresh(
    sources: Sequence[Source],
    into: Path,
    durations: Path | None = None,
    expect_shards: int | None = None,
    require_all: bool = False,
) -> Refresh:
    """Plan and fold ``sources`` onto the files under ``into`` (and ``durations``); writes nothing."""
    result = Refresh(plan(sources, expect_shards, require_all))
    for name, fp in result.plan.fingerprints.items():
        target = baselines.path_for(name, into)
        current = baselines.load(target)
        now = baselines.digest(target)
        result.moved[name] = [s for s in fp.taken if s.delta.base != now]
        folded = fold(current, fp)
        if folded is not None and folded is not current:
            before = current.cases if current else {}
            result.changed[name] = sum(
                1 for case, entry in folded.cases.items() if case not in before or before[case] != entry
            )
            result.baselines[target] = folded
    if durations is not None and not result.plan.empty:
        recorded = read_durations([durations]) if Path(durations).is_file() else {}
        result.durations = (Path(durations), fold_durations(recorded, result.plan))
    return result


def write(result: Refresh) -> list[Path]:
    """Write a folded refresh; each file atomically, and only once every file was worked out."""
    written = [baselines.write(path, baseline) for path, baseline in sorted(result.baselines.items())]
    if result.durations is not None:
        written.append(write_durations(result.durations[1], result.durations[0]))
    return written
