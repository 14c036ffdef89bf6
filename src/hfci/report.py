"""Report: model coverage from results files or baselines, as markdown, JSON and a chart.

Which architectures are tested and passing, on which devices: every (model type, head, device)
with its status, counts and pass rates by category, family and tier, every gap with its reason,
and what changed against a baseline. ``hfci report --github`` also writes the GitHub job summary
and annotations (through :mod:`hfci.github`, the only module that talks to Actions).

Runs without torch: the aggregate job of ``models.yml`` installs hfci without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hfci import baselines, data
from hfci.catalog import Catalog, ModelRecord, load_catalog
from hfci.errors import HfciError
from hfci.results import SCHEMA as RESULTS_SCHEMA
from hfci.results import Record, verdicts

SCHEMA = "hfci-report/1"
# The statuses of one case on one device, worst first. "missing": the catalog expects the case
# (``--scope catalog``) but no results file has it.
STATUSES = ("failed", "xfailed", "skipped", "missing", "passed")
LABELS = {
    "passed": "passed",
    "failed": "failed",
    "xfailed": "expected failure",
    "skipped": "skipped",
    "missing": "no result",
    "config-only": "config only",
}
# The order of columns people read: the good news first.
DISPLAY = ("passed", "failed", "xfailed", "skipped", "missing")
SYMBOLS = {"passed": "✅", "failed": "❌", "xfailed": "🟡", "skipped": "⏭️", "missing": "❔"}
CHECK_ORDER = ("forward", "determinism", "save_load", "benchmark", "generate", "pipeline")
CONFIG_ONLY = "config only: no model class of its own"
# GitHub refuses a step summary over 1 MiB; stay clearly under it, the note included.
SUMMARY_LIMIT = 1024 * 1024 - 16 * 1024
CHART_NAME = "report.svg"


class ReportError(HfciError):
    """Input the report cannot use: a missing file, corrupt JSON, an unknown schema."""


# -- reading -------------------------------------------------------------------------------------


@dataclass
class Source:
    """One input file: a results file of a run, or a baseline (outcomes only, no messages)."""

    path: Path
    kind: str
    device: str
    fingerprint: str
    records: list[Record]
    complete: bool = True


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file or directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(payload, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(payload).__name__}")
    return payload


def _results_source(path: Path, payload: Mapping[str, Any]) -> Source:
    rows = payload.get("records")
    if not isinstance(rows, list):
        raise ReportError(f"{path}: a results file without a 'records' list")
    try:
        records = [Record(**row) for row in rows]
    except TypeError as error:
        raise ReportError(f"{path}: a record does not match {RESULTS_SCHEMA} ({error})") from None
    device = str(payload.get("device") or (records[0].device if records else "?"))
    # A checkpoint, or a run stopped early: what it holds is true, but its selection is not all there.
    complete = payload.get("complete", True) is not False
    return Source(path, "results", device, str(payload.get("fingerprint", "")), records, complete)


def known_failure_reason(record: Record, transformers_version: str) -> str:
    """The models.toml reason for an expected failure, matched by the plugin's own matcher."""
    entry = data.known_failure(
        record.model_type, record.head, record.check, record.device, record.runner, transformers_version
    )
    return str(entry.get("reason", "")) if entry else ""


def _baseline_source(path: Path, payload: Mapping[str, Any], catalog: Catalog) -> Source:
    baseline = baselines.load(path) or baselines.Baseline(path.stem)
    device = baseline.device
    fingerprint = baseline.fingerprint
    env = baseline.environment
    when = ", ".join(x for x in (env.get("date"), env.get("commit") and f"commit {env['commit']}") if x)
    # Known failures are matched against the release the baseline was measured with.
    version = str(env.get("transformers") or catalog.transformers_version)
    records = []
    for key, entry in baseline.cases.items():
        case, _, runner = key.partition("@")
        model_type, _, head = case.partition("/")
        record = catalog.records.get(model_type)
        checks = entry.checks
        first = True
        for check, outcome in checks.items():
            perf = entry.perf if check == "benchmark" else None
            row = Record(
                case=case,
                model_type=model_type,
                head=head,
                device=device,
                check=check,
                outcome=str(outcome),
                # The case's duration once, on its first check, so totals stay right.
                duration=float(entry.duration or 0) if first else 0.0,
                category=record.category if record else "",
                tier=record.tier if record else "",
                metrics={"perf": perf} if perf else None,
                runner=runner or "eager",
            )
            if row.outcome != "passed":
                # Baselines keep outcomes, not messages: the known failure's reason, or where to look.
                reason = known_failure_reason(row, version) or (
                    f"{check} {outcome} in baseline {fingerprint}"
                    + (f" ({when})" if when else "")
                    + "; baselines keep outcomes only, the message is in that run's results"
                )
                row = replace(row, reason=reason)
            records.append(row)
            first = False
    return Source(path, "baseline", device, fingerprint, records)


def load_sources(paths: Iterable[str | Path], catalog: Catalog | None = None) -> list[Source]:
    """Every results or baseline file named, or found under a named directory."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("results-*.json"))
            if not found:
                raise ReportError(f"{path}: no results-*.json files under this directory")
            files += found
        else:
            files.append(path)
    sources = []
    for path in files:
        payload = _read_json(path)
        schema = payload.get("schema")
        if schema == RESULTS_SCHEMA:
            sources.append(_results_source(path, payload))
        elif schema == baselines.SCHEMA:
            sources.append(_baseline_source(path, payload, catalog or load_catalog()))
        else:
            raise ReportError(
                f"{path}: unknown schema {schema!r}; expected {RESULTS_SCHEMA!r} (a results file) "
                f"or {baselines.SCHEMA!r} (a baseline)"
            )
    if not sources:
        raise ReportError("no results or baseline files given")
    return sources


def comparison_baselines(
    spec: Sequence[str | Path], sources: Sequence[Source]
) -> tuple[dict[str, baselines.Baseline], list[str]]:
    """Device -> the baseline to compare with, and notes saying which file (or why none).

    A file applies to the device it was measured on; a directory gives each device the baseline
    of its fingerprint (or the same hardware's newest, as the plugin picks it).
    """
    chosen: dict[str, baselines.Baseline] = {}
    notes: list[str] = []
    fingerprints = {s.device: s.fingerprint for s in sources if s.fingerprint}
    for path in map(Path, spec):
        if path.is_dir():
            for device, fingerprint in sorted(fingerprints.items()):
                found, note = baselines.find(fingerprint, path)
                notes.append(f"{device}: {note}")
                if found is not None:
                    chosen.setdefault(device, found)
            continue
        found = baselines.load(path)
        if found is None:
            raise ReportError(f"{path}: no such baseline file or directory")
        chosen[found.device] = found
        device = found.device
        notes.append(f"{device}: baseline {path}")
    return chosen, notes


# -- the model of the report ---------------------------------------------------------------------


@dataclass
class CaseResult:
    """One case on one device: its status, each check's outcome, and why it is not passing."""

    case: str
    model_type: str
    head: str
    device: str
    status: str
    checks: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    duration: float = 0.0
    latency: float | None = None
    fixed: list[str] = field(default_factory=list)


def check_name(record: Record) -> str:
    """The check as the report shows it: a runner's parity is ``parity@<runner>``, as in baselines."""
    return record.check if record.runner == "eager" else f"{record.check}@{record.runner}"


def _check_key(check: str) -> tuple[int, str]:
    return (CHECK_ORDER.index(check) if check in CHECK_ORDER else len(CHECK_ORDER), check)


def case_status(records: Sequence[Record]) -> tuple[str, str]:
    """A case's status from its checks' outcomes (a failure outweighs all), with the reason.

    Skipped checks beside passing ones (a head with no pipeline task) leave the case passing.
    """
    ordered = sorted(records, key=lambda r: _check_key(check_name(r)))
    for outcome, status in (("failed", "failed"), ("xfailed", "xfailed")):
        hit = [r for r in ordered if r.outcome == outcome]
        if hit:
            return status, _reason_of(hit[0])
    if any(r.outcome in ("passed", "xpassed") for r in ordered):
        return "passed", ""
    if ordered:
        return "skipped", _reason_of(ordered[0])
    return "missing", "no check of this case has a result"


def _reason_of(record: Record) -> str:
    reason = record.reason.strip()
    if not reason and record.outcome == "xfailed":
        reason = known_failure_reason(record, load_catalog().transformers_version)
    if not reason:
        reason = f"{record.outcome}; the results file recorded no message"
    return f"{check_name(record)}: {reason}"


def _latency(records: Iterable[Record]) -> float | None:
    for record in records:
        perf = (record.metrics or {}).get("perf") or {}
        median = (perf.get("latency") or {}).get("median")
        if isinstance(median, (int, float)) and median > 0:
            return float(median)
    return None


def _not_run_reason(record: ModelRecord) -> str:
    from hfci import data

    skip = data.load("models").get(record.model_type, {}).get("skip")
    if skip:
        return f"skipped by models.toml: {skip}"
    return "no result: outside this run's selection, or its shard did not finish"


def _config_only_reason(record: ModelRecord, catalog: Catalog) -> str:
    parents = sorted(r.model_type for r in catalog if r.has_model and r.module == record.module)
    return CONFIG_ONLY + (f" (a sub-config of {', '.join(parents[:3])})" if parents else "")


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
    regressions: list[dict[str, Any]]
    improvements: list[dict[str, Any]]
    skipped_checks: list[tuple[str, int]]
    baseline_notes: list[str]
    runners: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def rates(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Category -> device -> (cases passing, cases): the chart's heatmap."""
        out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for case in self.cases:
            cell = out[self.model_types[case.model_type]["category"]][case.device]
            cell[0] += case.status == "passed"
            cell[1] += 1
        return {c: {d: (p, t) for d, (p, t) in row.items()} for c, row in out.items()}

    def latencies(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(list)
        for case in self.cases:
            if case.latency is not None:
                out[case.device].append(case.latency)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["schema"] = SCHEMA
        payload["skipped_checks"] = [{"reason": r, "count": n} for r, n in self.skipped_checks]
        payload["totals"] = self.groups["all"].get("all", {})
        return payload


def _record_row(record: Record, **extra: Any) -> dict[str, Any]:
    return {
        "case": record.case,
        "device": record.device,
        "check": record.check,
        "reason": record.reason,
        **extra,
    }


def build(
    sources: Sequence[Source],
    catalog: Catalog,
    compare: Mapping[str, Mapping[str, Any]] | None = None,
    scope: str = "run",
    selection: Sequence[ModelRecord] | None = None,
    baseline_notes: Sequence[str] = (),
) -> Report:
    """The report of some sources' records against the catalog (and baselines, if given).

    ``scope="run"``: the model types the records cover, with their config-only sub-configs.
    ``scope="catalog"``: every model type of ``selection`` (default: the whole catalog); the cases
    without a result are gaps too, so a shard that never reported cannot hide.
    """
    wanted = {r.model_type for r in selection} if selection is not None else None
    records = [r for s in sources for r in s.records if wanted is None or r.model_type in wanted]
    by_case: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        by_case[(record.case, record.device)].append(record)
    devices = sorted({r.device for r in records} | {s.device for s in sources if s.kind == "results"})
    devices = [d for d in devices if d != "?"] or sorted({s.device for s in sources})

    cases: list[CaseResult] = []
    for (case, device), mine in sorted(by_case.items()):
        status, reason = case_status(mine)
        cases.append(
            CaseResult(
                case=case,
                model_type=mine[0].model_type,
                head=mine[0].head,
                device=device,
                status=status,
                checks={
                    check_name(r): r.outcome for r in sorted(mine, key=lambda r: _check_key(check_name(r)))
                },
                reason=reason,
                duration=round(sum(r.duration for r in mine), 4),
                latency=_latency(mine),
                fixed=[check_name(r) for r in mine if r.outcome == "xpassed"],
            )
        )

    # Which model types the report is about.
    present = {c.model_type for c in cases}
    modules = {catalog.records[m].module for m in present if m in catalog.records}
    if scope == "catalog":
        universe = list(selection) if selection is not None else list(catalog)
    else:
        universe = [
            r for r in catalog if r.model_type in present or (not r.has_model and r.module in modules)
        ]
        if wanted is not None:
            universe = [r for r in universe if r.model_type in wanted]
    gaps: list[dict[str, Any]] = []
    if scope == "catalog":
        seen = {(c.case, c.device) for c in cases}
        for record in universe:
            if not record.has_model:
                continue
            for head in record.heads:
                for device in devices:
                    case = f"{record.model_type}/{head.name}"
                    if (case, device) not in seen:
                        cases.append(
                            CaseResult(
                                case,
                                record.model_type,
                                head.name,
                                device,
                                "missing",
                                {},
                                _not_run_reason(record),
                            )
                        )
        cases.sort(key=lambda c: (c.case, c.device))

    model_types: dict[str, dict[str, Any]] = {}
    for record in universe:
        model_types[record.model_type] = {
            "category": record.category,
            "family": record.family,
            "tier": record.tier,
            "config_only": not record.has_model,
            "heads": [h.name for h in record.heads],
        }
    for case in cases:
        if case.model_type not in model_types:
            # A model type this transformers does not know (results of another version).
            first = next(r for r in records if r.model_type == case.model_type)
            model_types[case.model_type] = {
                "category": first.category or "other",
                "family": f"not in transformers {catalog.transformers_version}",
                "tier": first.tier or "other",
                "config_only": False,
                "heads": sorted({c.head for c in cases if c.model_type == case.model_type}),
            }

    for model_type, info in sorted(model_types.items()):
        if info["config_only"]:
            gaps.append(
                {
                    "model_type": model_type,
                    "case": None,
                    "device": None,
                    "status": "config-only",
                    "reason": _config_only_reason(catalog.records[model_type], catalog),
                }
            )
    for case in cases:
        if case.status != "passed":
            gaps.append(
                {
                    "model_type": case.model_type,
                    "case": case.case,
                    "device": case.device,
                    "status": case.status,
                    "reason": case.reason,
                }
            )
    gaps.sort(
        key=lambda g: (
            STATUSES.index(g["status"]) if g["status"] in STATUSES else 9,
            g["model_type"],
            g["case"] or "",
            g["device"] or "",
        )
    )

    groups = _groups(cases, model_types)

    compare = compare or {}
    fresh, fixed = [], []
    for device, baseline in compare.items():
        mine = [r for r in records if r.device == device]
        fresh += [_record_row(r) for r in baselines.new_failures(baseline, mine)]
        fixed += [_record_row(r, outcome=r.outcome) for r in baselines.newly_fixed(baseline, mine)]
    regressions = [_record_row(r, detail=d) for r, d in verdicts(records, "regression")]
    improvements = [_record_row(r, detail=d) for r, d in verdicts(records, "improvement")]
    passing = {(c.case, c.device) for c in cases if c.status == "passed"}
    skipped_checks = Counter(
        r.reason or "no reason recorded"
        for r in records
        if r.outcome == "skipped" and (r.case, r.device) in passing
    ).most_common()
    return Report(
        sources=[
            {
                "path": str(s.path),
                "kind": s.kind,
                "complete": s.complete,
                "device": s.device,
                "fingerprint": s.fingerprint,
            }
            for s in sources
        ],
        transformers=catalog.transformers_version,
        scope=scope,
        devices=devices,
        cases=cases,
        model_types=model_types,
        gaps=gaps,
        groups=groups,
        new_failures=fresh,
        newly_fixed=fixed,
        regressions=regressions,
        improvements=improvements,
        skipped_checks=skipped_checks,
        baseline_notes=list(baseline_notes),
        runners=runner_parity(records),
    )


def runner_parity(records: Iterable[Record]) -> dict[str, dict[str, dict[str, Any]]]:
    """Runner -> category (and 'all') -> parity outcomes against eager, with the pass rate.

    The rate is over the cases the runner was tried on: a skip (no sdpa support, a missing
    package) is counted but not held against it.
    """
    table: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for record in records:
        if record.runner != "eager" and record.check == "parity":
            for group in (record.category or "other", "all"):
                table[record.runner][group][record.outcome] += 1
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for runner, groups in sorted(table.items()):
        out[runner] = {}
        for group, counts in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0])):
            tried = sum(counts[o] for o in ("passed", "failed", "xfailed", "xpassed"))
            out[runner][group] = {
                "cases": sum(counts.values()),
                **{o: counts[o] for o in ("passed", "failed", "xfailed", "xpassed", "skipped")},
                "pass_rate": round(counts["passed"] / tried, 4) if tried else None,
            }
    return out


def _groups(
    cases: Sequence[CaseResult], model_types: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """By category, family and tier (and 'all'): model types, config-only ones, case statuses, pass rate."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for axis in ("category", "family", "tier", "all"):
        table: dict[str, dict[str, Any]] = {}

        def row(name: str, table: dict[str, dict[str, Any]] = table) -> dict[str, Any]:
            return table.setdefault(
                name,
                {
                    "model_types": 0,
                    "config_only": 0,
                    "cases": 0,
                    **dict.fromkeys(STATUSES, 0),
                    "pass_rate": None,
                },
            )

        for info in model_types.values():
            entry = row("all" if axis == "all" else info[axis])
            entry["model_types"] += 1
            entry["config_only"] += bool(info["config_only"])
        for case in cases:
            entry = row("all" if axis == "all" else model_types[case.model_type][axis])
            entry["cases"] += 1
            entry[case.status] += 1
        for entry in table.values():
            entry["pass_rate"] = round(entry["passed"] / entry["cases"], 4) if entry["cases"] else None
        out[axis] = dict(sorted(table.items()))
    return out


# -- markdown ------------------------------------------------------------------------------------


def _cell(text: Any, limit: int = 300) -> str:
    """Text safe inside a markdown table cell: one line, pipes escaped, long messages cut."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def _source_kind(source: Mapping[str, Any]) -> str:
    if source.get("complete", True):
        return str(source["kind"])
    return (
        f"{source['kind']}, **partial**: its run stopped before the end, so a missing case may not have run"
    )


def markdown(report: Report, chart: str | None = CHART_NAME, chart_note: str = "") -> str:
    """The report as markdown: news first (new failures, regressions), then counts, gaps, matrix."""
    total = report.groups["all"].get("all") or {"cases": 0, "passed": 0, "model_types": 0, "pass_rate": None}
    lines = [
        "# hfci model coverage",
        "",
        f"transformers {report.transformers} · devices: {', '.join(report.devices) or 'none'} · "
        f"{total['model_types']} model types, {total['cases']} cases (model type × head × device), "  # noqa: RUF001
        f"**{total['passed']} passing ({_percent(total['pass_rate'])})** · scope: {report.scope}",
        "",
        "Sources: " + ", ".join(f"`{s['path']}` ({_source_kind(s)})" for s in report.sources),
    ]
    if report.baseline_notes:
        lines += ["", "Compared with: " + "; ".join(report.baseline_notes)]
    if chart:
        lines += ["", f"![pass rate by category and device; latency per device]({chart})"]
    elif chart_note:
        lines += ["", chart_note]

    def records_table(title: str, rows: Sequence[Mapping[str, Any]], column: str) -> None:
        if not rows:
            return
        lines.extend(
            [
                "",
                f"## {title} ({len(rows)})",
                "",
                f"| case | device | check | {column} |",
                "|---|---|---|---|",
            ]
        )
        lines.extend(
            f"| `{r['case']}` | {r['device']} | {r['check']} | {_cell(r.get(column.lower()) or r.get('reason', ''))} |"
            for r in rows
        )

    if report.baseline_notes or report.new_failures or report.newly_fixed:
        if not report.new_failures:
            lines += ["", "## New failures (0)", "", "No check that passed in the baseline fails now."]
        records_table("New failures against the baseline", report.new_failures, "Reason")
        records_table("Newly fixed against the baseline", report.newly_fixed, "Outcome")
    records_table("Performance regressions", report.regressions, "Detail")
    records_table("Performance improvements", report.improvements, "Detail")
    fixed = [c for c in report.cases if c.fixed]
    if fixed:
        lines += [
            "",
            f"## Known failures that now pass ({len(fixed)})",
            "",
            "Remove their `models.toml` entries.",
            "",
        ]
        lines += [f"- `{c.case}` [{c.device}]: {', '.join(c.fixed)}" for c in fixed]

    # Every status that occurs, and always passed and failed, so that tables keep their shape.
    shown = [
        s
        for s in DISPLAY
        if s in ("passed", "failed") or any(g.get(s) for t in report.groups.values() for g in t.values())
    ]
    for axis in ("category", "family", "tier"):
        lines += [
            "",
            f"## By {axis}",
            "",
            f"| {axis} | model types | config only | cases | "
            + " | ".join(LABELS[s] for s in shown)
            + " | pass rate |",
            "|---|" + "---:|" * (len(shown) + 4),
        ]
        for name, row in report.groups[axis].items():
            cells = " | ".join(str(row[s]) for s in shown)
            lines.append(
                f"| {name} | {row['model_types']} | {row['config_only']} | {row['cases']} | {cells} | {_percent(row['pass_rate'])} |"
            )

    if report.runners:
        lines += [
            "",
            "## Runner parity against eager",
            "",
            "Pass rate: of the cases each runner was tried on (skips are cases it does not apply to).",
            "",
            "| runner | category | cases | passed | failed | expected failure | skipped | pass rate |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for runner, groups in report.runners.items():
            lines += [
                f"| {runner} | {group} | {row['cases']} | {row['passed']} | {row['failed']} | "
                f"{row['xfailed']} | {row['skipped']} | {_percent(row['pass_rate'])} |"
                for group, row in groups.items()
            ]

    lines += ["", f"## Gaps ({len(report.gaps)})", ""]
    if report.gaps:
        counts = Counter(g["status"] for g in report.gaps)
        lines += [", ".join(f"{n} {LABELS.get(s, s)}" for s, n in counts.most_common()), ""]
        lines += ["| model type | case | device | status | reason |", "|---|---|---|---|---|"]
        lines += [
            f"| {g['model_type']} | {'`' + g['case'] + '`' if g['case'] else '—'} | {g['device'] or '—'} | "
            f"{LABELS.get(g['status'], g['status'])} | {_cell(g['reason'])} |"
            for g in report.gaps
        ]
    else:
        lines.append("Every case passes.")
    if report.skipped_checks:
        lines += ["", "## Checks skipped inside passing cases", "", "| checks | reason |", "|---:|---|"]
        lines += [f"| {n} | {_cell(reason)} |" for reason, n in report.skipped_checks[:30]]

    lines += [
        "",
        "## Architectures × heads × devices",  # noqa: RUF001
        "",
        "✅ passed · ❌ failed · 🟡 expected failure · ⏭️ skipped · ❔ no result; "
        "a gap names the check it comes from (the first of: " + ", ".join(CHECK_ORDER) + ")",
        "",
        "| model type | head | " + " | ".join(report.devices) + " |",
        "|---|---|" + "---|" * len(report.devices),
    ]
    grid: dict[tuple[str, str], dict[str, CaseResult]] = defaultdict(dict)
    for case in report.cases:
        grid[(case.model_type, case.head)][case.device] = case
    rows = sorted(set(grid) | {(m, "") for m, info in report.model_types.items() if info["config_only"]})
    for model_type, head in rows:
        if not head:
            lines.append(f"| {model_type} | — | " + " | ".join("config only" for _ in report.devices) + " |")
            continue
        cells = []
        for device in report.devices:
            case = grid[(model_type, head)].get(device)
            if case is None:
                cells.append("")
            elif case.status in ("passed", "missing"):
                cells.append(SYMBOLS[case.status])
            else:
                # The check the status comes from, so the cell says where it broke.
                cells.append(f"{SYMBOLS[case.status]} {case.reason.split(':', 1)[0]}")
        lines.append(f"| {model_type} | {head} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def truncate(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """``text`` cut at a line boundary to fit ``limit`` UTF-8 bytes, with a line saying so."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = (
        f"\n\n> **Truncated**: this report is {len(data):,} bytes, over GitHub's 1 MiB job-summary "
        "limit; the rest is in the `hfci-report` artifact (report.md, report.json).\n"
    )
    cut = data[: limit - len(note.encode("utf-8"))].decode("utf-8", errors="ignore")
    return cut[: cut.rfind("\n") + 1 if "\n" in cut else len(cut)] + note


# -- GitHub --------------------------------------------------------------------------------------


def publish(report: Report, markdown_text: str) -> None:
    """The job summary (truncated under 1 MiB) and annotations: failures, then regressions."""
    from hfci import github

    github.append_summary(truncate(markdown_text))
    new = {(r["case"], r["device"], r["check"]) for r in report.new_failures}
    failures = sorted(
        (c for c in report.cases if c.status == "failed"),
        key=lambda c: (not any((c.case, c.device, k) in new for k in c.checks), c.case, c.device),
    )
    github.annotate(
        "error",
        [
            github.Annotation(
                c.reason,
                title=f"{c.case} [{c.device}]"
                + (" new failure" if any((c.case, c.device, k) in new for k in c.checks) else " failed"),
            )
            for c in failures
        ],
    )
    github.annotate(
        "warning",
        [
            github.Annotation(
                f"{r['check']}: {r['detail']}", title=f"{r['case']} [{r['device']}] performance regression"
            )
            for r in report.regressions
        ],
    )


# -- the command ---------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    selection = None
    if args.category or args.family or args.tier or args.model:
        selection = catalog.select(args.category, args.family, args.tier, args.model)
    sources = load_sources(args.sources or ["results"], catalog)
    compare, notes = comparison_baselines(args.baseline, sources)
    report = build(sources, catalog, compare, args.scope, selection, notes)
    text = markdown(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from hfci import chart

        (out / "report.md").write_text(text, encoding="utf-8")
        (out / "report.json").write_text(_json(report), encoding="utf-8")
        chart.write(out / CHART_NAME, report.rates(), report.latencies())
        print(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / CHART_NAME}", file=sys.stderr)
    if args.github:
        note = f"The chart is `{CHART_NAME}` in the `hfci-report` artifact."
        publish(report, markdown(report, chart=None, chart_note=note))
    fmt = args.format or (None if args.out or args.github else "md")
    if fmt == "md":
        sys.stdout.write(text)
    elif fmt == "json":
        sys.stdout.write(_json(report))
    return 0


def _json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def add_command(sub: Any) -> None:
    """Register ``hfci report``."""
    parser = sub.add_parser(
        "report",
        help="model coverage report from results files or a baseline (markdown, JSON, chart)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="results-<device>.json files, directories holding them, or baseline files (default: results)",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="PATH",
        help="compare with a baseline file, or a baselines directory (each device its fingerprint's file)",
    )
    parser.add_argument(
        "--format", choices=("md", "json"), help="print to stdout (default: md, unless --out/--github)"
    )
    parser.add_argument("--out", metavar="DIR", help="write report.md, report.json and report.svg to DIR")
    parser.add_argument("--github", action="store_true", help="write the job summary and annotations")
    parser.add_argument(
        "--scope",
        choices=("run", "catalog"),
        default="run",
        help="run: the model types in the results; catalog: every selected model type, missing cases are gaps",
    )
    for option, example in (
        ("category", "text"),
        ("family", "encoder-only"),
        ("tier", "critical"),
        ("model", "bert"),
    ):
        parser.add_argument(f"--{option}", action="append", default=[], help=f"only these, e.g. {example}")
    parser.set_defaults(func=cmd_report)
