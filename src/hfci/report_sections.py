"""The report's model (:class:`Report`, :class:`CaseResult`) and its markdown: one function per
section, and the table helpers every section uses.

``hfci report`` puts the sections together (:func:`markdown`). The job summary of a model run
(:mod:`hfci.github`) writes its two sections (:func:`outcomes_by_device`, :func:`failing_checks`)
with the same helpers, from the records alone.

This module imports nothing of hfci but :mod:`hfci.results`: the job summary needs neither the
catalog nor baselines, and :mod:`hfci.report`, which builds the model, imports it from here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from hfci.results import CHECKS, Outcome, Record

__all__ = [
    "CHART_NAME",
    "DISPLAY",
    "LABELS",
    "SCHEMA",
    "SUMMARY_LIMIT",
    "SYMBOLS",
    "CaseResult",
    "Report",
    "Status",
    "baseline_changes",
    "cell",
    "coverage_matrix",
    "failing_checks",
    "features_covered",
    "fixed_known_failures",
    "gaps",
    "group_tables",
    "header",
    "markdown",
    "outcomes_by_device",
    "percent",
    "record_row",
    "records_section",
    "records_table",
    "runner_parity",
    "skipped_checks",
    "table",
    "truncate",
]

CHART_NAME = "report.svg"
# GitHub refuses a step summary over 1 MiB; stay clearly under it, the note included.
SUMMARY_LIMIT = 1024 * 1024 - 16 * 1024
# The job summary lists this many failing checks; past them it says how many more there are.
FAILING_CHECKS_SHOWN = 200


class Status(str, Enum):
    """The report's own statuses, where no check's outcome gives one (the others are Outcomes)."""

    MISSING = "missing"  # the catalog expects the case (--scope catalog) but no results file has it
    CONFIG_ONLY = "config-only"  # a model type without a model class of its own: nothing to run

    def __str__(self) -> str:
        return self.value


LABELS = {
    Outcome.PASSED: "passed",
    Outcome.FAILED: "failed",
    Outcome.CRASHED: "crashed",
    Outcome.XFAILED: "expected failure",
    Outcome.SKIPPED: "skipped",
    Status.MISSING: "no result",
    Status.CONFIG_ONLY: "config only",
}
# The order of columns people read: the good news first.
DISPLAY = (Outcome.PASSED, Outcome.FAILED, Outcome.CRASHED, Outcome.XFAILED, Outcome.SKIPPED, Status.MISSING)
SYMBOLS = {
    Outcome.PASSED: "✅",
    Outcome.FAILED: "❌",
    Outcome.CRASHED: "💥",
    Outcome.XFAILED: "🟡",
    Outcome.SKIPPED: "⏭️",
    Status.MISSING: "❔",
}


# -- helpers -------------------------------------------------------------------------------------


SCHEMA = "hfci-report/1"


@dataclass
class CaseResult:
    """One case on one device: its status, each check's outcome, and why it is not passing."""

    case: str
    model_type: str
    head: str
    device: str
    status: Outcome | Status
    checks: dict[str, Outcome] = field(default_factory=dict)
    reason: str = ""
    duration: float = 0.0
    latency: float | None = None
    fixed: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything the markdown, the JSON and the chart show."""

    sources: list[dict[str, Any]]
    transformers: str
    scope: str
    devices: list[str]
    cases: list[CaseResult]
    model_types: dict[str, dict[str, Any]]
    gaps: list[dict[str, Any]]
    groups: dict[str, dict[str, dict[str, Any]]]
    new_failures: list[dict[str, Any]]
    newly_fixed: list[dict[str, Any]]
    lost_coverage: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
    improvements: list[dict[str, Any]]
    skipped_checks: list[tuple[str, int]]
    baseline_notes: list[str]
    runners: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    features: dict[str, dict[str, int]] = field(default_factory=dict)

    def rates(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Category -> device -> (cases passing, cases): the chart's heatmap."""
        out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for case in self.cases:
            cell = out[self.model_types[case.model_type]["category"]][case.device]
            cell[0] += case.status == Outcome.PASSED
            cell[1] += 1
        return {c: {d: (p, t) for d, (p, t) in row.items()} for c, row in out.items()}

    def latencies(self) -> dict[str, list[float]]:
        """Device -> the benchmark latency medians of its cases (seconds): the chart's box plot."""
        out: dict[str, list[float]] = defaultdict(list)
        for case in self.cases:
            if case.latency is not None:
                out[case.device].append(case.latency)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        """The report as its JSON file holds it."""
        payload = asdict(self)
        payload["schema"] = SCHEMA
        payload["skipped_checks"] = [{"reason": r, "count": n} for r, n in self.skipped_checks]
        payload["totals"] = self.groups["all"].get("all", {})
        return payload


def cell(text: Any, limit: int = 300) -> str:
    """Text safe inside a markdown table cell: one line, pipes escaped, long messages cut."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def percent(rate: float | None) -> str:
    """A pass rate as people read it; a dash where there was nothing to pass."""
    return "—" if rate is None else f"{rate:.1%}"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table; ``align`` has an ``l`` or ``r`` per column (default: all left)."""
    align = align or "l" * len(columns)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "".join("---:|" if side == "r" else "---|" for side in align),
    ]
    return lines + ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]


def record_row(record: Record, **extra: Any) -> dict[str, Any]:
    """One check as the report's tables (and its JSON) list it: where it ran, and why."""
    return {
        "case": record.case,
        "device": record.device,
        "check": record.check,
        "reason": record.reason,
        **extra,
    }


def records_table(rows: Sequence[Mapping[str, Any]], column: str, limit: int = 300) -> list[str]:
    """Checks (:func:`record_row`), with ``column`` (its key lowercased; else the reason) last."""
    return table(
        ["case", "device", "check", column],
        (
            [
                f"`{r['case']}`",
                r["device"],
                r["check"],
                cell(r.get(column.lower()) or r.get("reason", ""), limit),
            ]
            for r in rows
        ),
    )


def records_section(title: str, rows: Sequence[Mapping[str, Any]], column: str) -> list[str]:
    """A titled :func:`records_table`, with its count; nothing at all when there are no rows."""
    if not rows:
        return []
    return ["", f"## {title} ({len(rows)})", "", *records_table(rows, column)]


def truncate(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """``text`` cut at a line boundary to fit ``limit`` UTF-8 bytes, with a line saying so."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    note = (
        f"\n\n> **Truncated**: this report is {len(encoded):,} bytes, over GitHub's 1 MiB job-summary "
        "limit; the rest is in the `hfci-report` artifact (report.md, report.json).\n"
    )
    cut = encoded[: limit - len(note.encode("utf-8"))].decode("utf-8", errors="ignore")
    return cut[: cut.rfind("\n") + 1 if "\n" in cut else len(cut)] + note


# -- the report's sections, in the order markdown() puts them ------------------------------------
# Each returns its lines, starting with the blank line that separates it from the one before.


def markdown(report: Report, chart: str | None = CHART_NAME, chart_note: str = "") -> str:
    """The report as markdown: news first (new failures, regressions), then counts, gaps, matrix."""
    sections = (
        header(report, chart, chart_note),
        baseline_changes(report),
        records_section("Performance regressions", report.regressions, "Detail"),
        records_section("Performance improvements", report.improvements, "Detail"),
        fixed_known_failures(report),
        group_tables(report),
        features_covered(report),
        runner_parity(report),
        gaps(report),
        skipped_checks(report),
        coverage_matrix(report),
    )
    return "\n".join(line for section in sections for line in section) + "\n"


def _source_kind(source: Mapping[str, Any]) -> str:
    if source.get("complete", True):
        return str(source["kind"])
    return (
        f"{source['kind']}, **partial**: its run stopped before the end, so a missing case may not have run"
    )


def header(report: Report, chart: str | None = CHART_NAME, chart_note: str = "") -> list[str]:
    """The title, the totals in one line, the sources, the baselines compared with, the chart."""
    total = report.groups["all"].get("all") or {
        "cases": 0,
        Outcome.PASSED: 0,
        "model_types": 0,
        "pass_rate": None,
    }
    lines = [
        "# hfci model coverage",
        "",
        f"transformers {report.transformers} · devices: {', '.join(report.devices) or 'none'} · "
        f"{total['model_types']} model types, {total['cases']} cases (model type × head × device), "  # noqa: RUF001
        f"**{total[Outcome.PASSED]} passing ({percent(total['pass_rate'])})** · scope: {report.scope}",
        "",
        "Sources: " + ", ".join(f"`{s['path']}` ({_source_kind(s)})" for s in report.sources),
    ]
    if report.baseline_notes:
        lines += ["", "Compared with: " + "; ".join(report.baseline_notes)]
    if chart:
        lines += ["", f"![pass rate by category and device; latency per device]({chart})"]
    elif chart_note:
        lines += ["", chart_note]
    return lines


def baseline_changes(report: Report) -> list[str]:
    """New failures, lost coverage and fixes against the baseline; says so when nothing newly fails."""
    if not (report.baseline_notes or report.new_failures or report.newly_fixed or report.lost_coverage):
        return []
    lines = []
    if not report.new_failures:
        lines += ["", "## New failures (0)", "", "No check that passed in the baseline fails now."]
    lines += records_section("New failures against the baseline", report.new_failures, "Reason")
    # Beside the failures: a check that now skips or is expected to fail proves less than it did.
    lines += records_section(
        "Lost coverage against the baseline: passed there, skipped or expected to fail now",
        report.lost_coverage,
        "Now",
    )
    return lines + records_section("Newly fixed against the baseline", report.newly_fixed, "Outcome")


def fixed_known_failures(report: Report) -> list[str]:
    """Cases whose known failures passed: their models.toml entries can go."""
    fixed = [c for c in report.cases if c.fixed]
    if not fixed:
        return []
    return [
        "",
        f"## Known failures that now pass ({len(fixed)})",
        "",
        "Remove their `models.toml` entries.",
        "",
        *(f"- `{c.case}` [{c.device}]: {', '.join(c.fixed)}" for c in fixed),
    ]


def group_tables(report: Report) -> list[str]:
    """Counts and pass rates by category, family and tier."""
    # Every status that occurs, and always passed and failed, so that tables keep their shape.
    shown = [
        s
        for s in DISPLAY
        if s in (Outcome.PASSED, Outcome.FAILED)
        or any(g.get(s) for t in report.groups.values() for g in t.values())
    ]
    lines: list[str] = []
    for axis in ("category", "family", "tier"):
        lines += ["", f"## By {axis}", ""]
        lines += table(
            [axis, "model types", "config only", "cases", *(LABELS[s] for s in shown), "pass rate"],
            (
                [
                    name,
                    row["model_types"],
                    row["config_only"],
                    row["cases"],
                    *(row[s] for s in shown),
                    percent(row["pass_rate"]),
                ]
                for name, row in report.groups[axis].items()
            ),
            "l" + "r" * (len(shown) + 4),
        )
    return lines


def features_covered(report: Report) -> list[str]:
    """The paths of real models the passing cases took: what "passed" covered."""
    if not report.features:
        return []
    lines = [
        "",
        "## What the passes covered",
        "",
        "Cases whose tiny config takes each path of real checkpoints, or that a check ran on "
        "(failures included), and how many of them pass.",
        "",
    ]
    return lines + table(
        ["path", "cases", "passing"],
        ([name, row["cases"], row["passing"]] for name, row in report.features.items()),
        "lrr",
    )


def runner_parity(report: Report) -> list[str]:
    """Each runner's parity with eager, by category."""
    if not report.runners:
        return []
    rows = [row for groups in report.runners.values() for row in groups.values()]
    crashed = (Outcome.CRASHED,) if any(row.get(Outcome.CRASHED) for row in rows) else ()
    outcomes = (Outcome.PASSED, Outcome.FAILED, *crashed, Outcome.XFAILED, Outcome.SKIPPED)
    lines = [
        "",
        "## Runner parity against eager",
        "",
        "Pass rate: of the cases each runner was tried on (skips are cases it does not apply to).",
        "",
    ]
    return lines + table(
        ["runner", "category", "cases", *(LABELS[o] for o in outcomes), "pass rate"],
        (
            [runner, group, row["cases"], *(row[o] for o in outcomes), percent(row["pass_rate"])]
            for runner, groups in report.runners.items()
            for group, row in groups.items()
        ),
        "ll" + "r" * (len(outcomes) + 2),
    )


def gaps(report: Report) -> list[str]:
    """Every case (and config-only model type) that does not pass, with its reason."""
    lines = ["", f"## Gaps ({len(report.gaps)})", ""]
    if not report.gaps:
        return [*lines, "Every case passes."]
    counts = Counter(g["status"] for g in report.gaps)
    lines += [", ".join(f"{n} {LABELS.get(s, s)}" for s, n in counts.most_common()), ""]
    return lines + table(
        ["model type", "case", "device", "status", "reason"],
        (
            [
                g["model_type"],
                f"`{g['case']}`" if g["case"] else "—",
                g["device"] or "—",
                LABELS.get(g["status"], g["status"]),
                cell(g["reason"]),
            ]
            for g in report.gaps
        ),
    )


def skipped_checks(report: Report) -> list[str]:
    """Why checks were skipped in cases that pass all the same (a head with no pipeline task)."""
    if not report.skipped_checks:
        return []
    lines = ["", "## Checks skipped inside passing cases", ""]
    return lines + table(["checks", "reason"], ([n, cell(r)] for r, n in report.skipped_checks[:30]), "rl")


def _matrix_cell(case: CaseResult | None) -> str:
    if case is None:
        return ""
    if case.status in (Outcome.PASSED, Status.MISSING):
        return SYMBOLS[case.status]
    # The check the status comes from, so the cell says where it broke.
    return f"{SYMBOLS[case.status]} {case.reason.split(':', 1)[0]}"


def coverage_matrix(report: Report) -> list[str]:
    """Every model type and head against every device, one symbol a cell."""
    lines = [
        "",
        "## Architectures × heads × devices",  # noqa: RUF001
        "",
        "✅ passed · ❌ failed · 🟡 expected failure · ⏭️ skipped · ❔ no result; "
        "a gap names the check it comes from (the first of: " + ", ".join(CHECKS) + ")",
        "",
    ]
    grid: dict[tuple[str, str], dict[str, CaseResult]] = {}
    for case in report.cases:
        grid.setdefault((case.model_type, case.head), {})[case.device] = case
    # A config-only model type has no head: one row saying so.
    rows = sorted(set(grid) | {(m, "") for m, info in report.model_types.items() if info["config_only"]})
    return lines + table(
        ["model type", "head", *report.devices],
        (
            [model_type, head, *(_matrix_cell(grid[(model_type, head)].get(d)) for d in report.devices)]
            if head
            else [model_type, "—", *("config only" for _ in report.devices)]
            for model_type, head in rows
        ),
    )


# -- the job summary of a model run --------------------------------------------------------------


def outcomes_by_device(records: Sequence[Record]) -> list[str]:
    """Per device: the checks of each outcome that occurs, the cases, and the minutes they took."""
    outcomes = sorted({r.outcome for r in records})
    rows = []
    for device in sorted({str(r.device) for r in records}):
        mine = [r for r in records if str(r.device) == device]
        counts = Counter(r.outcome for r in mine)
        minutes = sum(float(r.duration or 0) for r in mine) / 60
        rows.append([device, *(counts[o] for o in outcomes), len({r.case for r in mine}), f"{minutes:.1f}"])
    return [
        "",
        *table(["device", *map(str, outcomes), "cases", "minutes"], rows, "l" + "r" * (len(outcomes) + 2)),
    ]


def failing_checks(records: Sequence[Record], shown: int = FAILING_CHECKS_SHOWN) -> list[str]:
    """The failing checks with their reasons, the first ``shown`` of them, then how many more."""
    failed = [r for r in records if r.outcome.failing]
    if not failed:
        return []
    lines = ["", f"#### {len(failed)} failing checks", ""]
    lines += records_table([record_row(r) for r in failed[:shown]], "reason", limit=200)
    if len(failed) > shown:
        lines.append(f"\n... and {len(failed) - shown} more; see the results artifacts.")
    return lines
