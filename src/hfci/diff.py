"""``hfci diff OLD NEW``: what changed between two runs, such as before and after a transformers upgrade.

Each side is results files (or directories of shard results) or a baseline. The catalog diff
(model types and heads added and removed) comes first, then every case that changed: a new
failure (passed before, fails now, with its reason and, where the message names one, the
transformers file and line), fixed, a new architecture or head with its status, removed, lost
coverage (a check that passed and now skips or is expected to fail), a known failure whose models.toml
entry does not cover the new release (the same check raising the same exception, now
unexpected: extend the entry's range once its cause is confirmed), and the latency and memory
changes, judged by the benchmark's own rules (the seen range, the tolerance, Mann-Whitney on the
stored samples). Markdown, JSON or the job summary, like ``hfci report``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hfci import bench, github
from hfci.catalog import load_catalog
from hfci.report import case_status, load_sources
from hfci.report_sections import cell, table, truncate
from hfci.results import Outcome, Record

__all__ = ["CHANGES", "CaseChange", "Diff", "add_command", "build", "cmd_diff", "markdown"]

SCHEMA = "hfci-diff/1"

# The kinds of change, in the order the diff lists them: what needs a person first.
CHANGES = (
    "new failure",
    "entry out of range",
    "lost coverage",
    "new architecture",
    "new head",
    "removed",
    "fixed",
    "still failing",
    "unchanged",
)

_FAILING = (Outcome.FAILED, Outcome.CRASHED)
# "... at transformers/models/x/modeling_x.py:123 (forward)": where a message names the line.
_WHERE = re.compile(r"transformers/[\w/.-]+\.py:\d+")


@dataclass
class CaseChange:
    """One case on one device, as the two runs saw it."""

    case: str
    model_type: str
    device: str
    change: str
    old: str = ""
    new: str = ""
    reason: str = ""
    where: str = ""
    checks: list[str] = field(default_factory=list)


@dataclass
class Diff:
    """Everything the markdown and the JSON show."""

    old: dict[str, Any]
    new: dict[str, Any]
    model_types: dict[str, list[str]]
    cases: list[CaseChange]
    performance: list[dict[str, Any]]

    def counts(self) -> dict[str, int]:
        """How many cases each kind of change holds (every kind, zeros included)."""
        found = dict.fromkeys(CHANGES, 0)
        for case in self.cases:
            found[case.change] += 1
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "old": self.old,
            "new": self.new,
            "counts": self.counts(),
            "model_types": self.model_types,
            "cases": [asdict(c) for c in self.cases],
            "performance": self.performance,
        }


def _by_case(records: Iterable[Record]) -> dict[tuple[str, str], list[Record]]:
    """Each (case, device)'s own checks: eager's, as a runner's parity is a verdict on the runner."""
    cases: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        if record.runner == "eager":
            cases[record.case, record.device].append(record)
    return cases


def _status(records: Sequence[Record]) -> tuple[str, str]:
    """The case's status and the reason of its first failing check, as ``hfci report`` tells
    them (:func:`hfci.report.case_status`); the benchmark's verdict is a performance change,
    reported apart."""
    status, reason = case_status([r for r in records if r.check != "benchmark"])
    return str(status), reason


def _lost(old: Sequence[Record], new: Sequence[Record]) -> list[str]:
    """The checks that passed before and now skip or are expected to fail."""
    passed = {r.check for r in old if r.outcome == Outcome.PASSED and r.check != "benchmark"}
    return sorted(
        r.check for r in new if r.check in passed and r.outcome in (Outcome.SKIPPED, Outcome.XFAILED)
    )


def classify(old: Sequence[Record] | None, new: Sequence[Record] | None, known_types: set[str]) -> CaseChange:
    """One case's change; ``known_types`` are the model types the old run had."""
    sample = (new or old or [None])[0]
    assert sample is not None
    change = CaseChange(sample.case, sample.model_type, sample.device, "unchanged")
    if not new:
        change.change, change.old = "removed", _status(old or [])[0]
        return change
    change.new, change.reason = _status(new)
    # The reason's own line, else the one an expected failure raised through (an entry's reason
    # says why, the exception says where).
    texts = [change.reason, *(r.raised for r in new if r.raised)]
    change.where = next((m.group(0) for m in map(_WHERE.search, texts) if m), "")
    if not old:
        change.change = "new head" if sample.model_type in known_types else "new architecture"
        return change
    change.old = _status(old)[0]
    failing = {str(o) for o in _FAILING}
    if change.new in failing:
        change.checks = sorted(r.check for r in new if r.outcome in _FAILING)
        if change.old in failing:
            change.change = "still failing"
        elif change.old == "xfailed" and _same_failure(old, new):
            change.change = "entry out of range"
        else:
            # A known failure that now fails otherwise is new too: it is not the failure expected.
            change.change = "new failure"
    elif change.old in failing | {"xfailed"} and change.new == "passed":
        change.change = "fixed"
    else:
        change.checks = _lost(old, new)
        if change.checks:
            change.change = "lost coverage"
            change.reason = next(r.reason for r in new if r.check == change.checks[0])
    return change


def _exception(text: str) -> str:
    """The exception class a reason or ``raised`` starts with (``hfci.checks.CheckFailed: ...``)."""
    return text.split(":", 1)[0].rsplit(".", 1)[-1].strip()


def _same_failure(old: Sequence[Record], new: Sequence[Record]) -> bool:
    """Whether a check the old run expected to fail raises the same exception, unexpected now."""
    expected = {r.check: _exception(r.raised) for r in old if r.outcome == Outcome.XFAILED and r.raised}
    return any(expected.get(r.check) == _exception(r.reason) for r in new if r.outcome in _FAILING)


def _perf(records: Sequence[Record]) -> dict[str, Any] | None:
    return next(
        (
            (r.metrics or {}).get("perf")
            for r in records
            if r.check == "benchmark" and (r.metrics or {}).get("perf")
        ),
        None,
    )


def performance(
    old: Mapping[tuple[str, str], Sequence[Record]],
    new: Mapping[tuple[str, str], Sequence[Record]],
    tolerance: float,
    memory_tolerance: float,
) -> list[dict[str, Any]]:
    """Latency and memory changes of the cases both runs measured, by the benchmark's rules: the
    new run's samples against the old run's as if the old were a baseline entry."""
    found = []
    for key in sorted(old.keys() & new.keys()):
        before, after = _perf(old[key]), _perf(new[key])
        if not before or not after or not bench.comparable(before) or not after.get("samples"):
            continue
        samples = list(after["samples"])
        measured = bench.Measurement(samples, [1.0] * len(samples), 1, after.get("peak_memory"))
        for verdict in (
            bench.compare_latency(before, measured, tolerance),
            bench.compare_memory(before, measured, memory_tolerance),
        ):
            if verdict.kind in ("regression", "improvement"):
                found.append(
                    {
                        "case": key[0],
                        "device": key[1],
                        "kind": verdict.kind,
                        "metric": verdict.metric,
                        "detail": verdict.detail,
                    }
                )
    return found


def _side(sources: Sequence[Any]) -> dict[str, Any]:
    versions = sorted({s.transformers for s in sources if s.transformers})
    return {"sources": [str(s.path) for s in sources], "transformers": ", ".join(versions) or "unknown"}


def build(
    old_sources: Sequence[Any],
    new_sources: Sequence[Any],
    tolerance: float = 0.20,
    memory_tolerance: float = 0.05,
    selected: bool = False,
) -> Diff:
    """The diff of two sets of sources (see :func:`hfci.report.load_sources`). ``selected``: the
    new run covered a selection (a tier, the model types an upgrade touches), so the old run's
    other cases are left out rather than called removed."""
    old = _by_case(r for s in old_sources for r in s.records)
    new = _by_case(r for s in new_sources for r in s.records)
    # Known before: from the whole old run, even where only a selection is compared.
    old_types = {r[0].model_type for r in old.values()}
    new_types = {r[0].model_type for r in new.values()}
    if selected:
        old = {key: records for key, records in old.items() if key in new}
    cases = [classify(old.get(key), new.get(key), old_types) for key in sorted(old.keys() | new.keys())]
    cases.sort(key=lambda c: (CHANGES.index(c.change), c.case, c.device))
    return Diff(
        old=_side(old_sources),
        new=_side(new_sources),
        model_types={
            "added": sorted(new_types - old_types),
            "removed": [] if selected else sorted(old_types - new_types),
        },
        cases=cases,
        performance=performance(old, new, tolerance, memory_tolerance),
    )


def markdown(diff: Diff) -> str:
    """The diff as markdown: the counts, the catalog diff, then each kind of change but the unchanged."""
    counts = diff.counts()
    lines = [
        f"# hfci diff: transformers {diff.old['transformers']} → {diff.new['transformers']}",
        "",
        ", ".join(f"{n} {kind}" for kind, n in counts.items()),
        "",
        f"Model types added ({len(diff.model_types['added'])}): "
        + (", ".join(diff.model_types["added"]) or "none"),
        "",
        f"Model types removed ({len(diff.model_types['removed'])}): "
        + (", ".join(diff.model_types["removed"]) or "none"),
    ]
    for kind in CHANGES[:-1]:
        rows = [c for c in diff.cases if c.change == kind]
        if not rows:
            continue
        lines += ["", f"## {kind[0].upper()}{kind[1:]} ({len(rows)})", ""]
        lines += table(
            ["case", "device", "before", "now", "checks", "reason", "where"],
            (
                [
                    f"`{c.case}`",
                    c.device,
                    c.old or "—",
                    c.new or "—",
                    ", ".join(c.checks),
                    cell(c.reason),
                    c.where,
                ]
                for c in rows
            ),
        )
    if diff.performance:
        lines += ["", f"## Performance changes ({len(diff.performance)})", ""]
        lines += table(
            ["case", "device", "change", "metric", "detail"],
            ([f"`{p['case']}`", p["device"], p["kind"], p["metric"], p["detail"]] for p in diff.performance),
        )
    return "\n".join(lines) + "\n"


def cmd_diff(args: argparse.Namespace) -> int:
    """``hfci diff``: compare two runs; exits 1 when a case newly fails."""
    catalog = load_catalog()
    diff = build(
        load_sources([args.old], catalog),
        load_sources([args.new], catalog),
        args.tolerance,
        args.memory_tolerance,
        args.selected,
    )
    text = markdown(diff)
    if args.github:
        github.append_summary(truncate(text))
    if args.format == "json":
        sys.stdout.write(json.dumps(diff.to_dict(), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(text)
    return 1 if diff.counts()["new failure"] else 0


def add_command(sub: Any) -> None:
    """Register ``hfci diff``."""
    parser = sub.add_parser(
        "diff",
        help="what changed between two runs (results or baselines): new failures, fixes, new architectures",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("old", help="the earlier run: a results file, a directory of them, or a baseline")
    parser.add_argument("new", help="the later run, in the same forms")
    parser.add_argument("--format", choices=("md", "json"), default="md")
    parser.add_argument(
        "--selected",
        action="store_true",
        help="the new run covered a selection: compare its cases only (none is called removed)",
    )
    parser.add_argument("--github", action="store_true", help="also write the markdown to the job summary")
    parser.add_argument("--tolerance", type=float, default=0.20, help="allowed latency change (as a run's)")
    parser.add_argument("--memory-tolerance", type=float, default=0.05, help="allowed peak-memory change")
    parser.set_defaults(func=cmd_diff)
