"""Report: model coverage from results files or baselines, as markdown, JSON and a chart.

Which architectures are tested and passing, on which devices: every (model type, head, device)
with its status, counts and pass rates by category, family and tier, every gap with its reason,
and what changed against a baseline. ``hfci report --github`` also writes the GitHub job summary
and annotations (through :mod:`hfci.github`, the only module that talks to Actions).

Here: reading the sources (results files through :mod:`hfci.results`' reader, baselines through
:mod:`hfci.baselines`), building the report in named steps, the command. The markdown, one
function per section, is :mod:`hfci.report_sections`.

Runs without torch: the aggregate job of ``models.yml`` installs hfci without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from hfci import baselines, chart, data, github
from hfci.catalog import Catalog, ModelRecord, load_catalog
from hfci.errors import HfciError
from hfci.report_sections import (
    CHART_NAME,
    SCHEMA,
    SUMMARY_LIMIT,
    CaseResult,
    Report,
    Status,
    markdown,
    record_row,
    truncate,
)
from hfci.results import CHECKS, Outcome, Record, ResultsFile, read_results_file, results_files, verdicts
from hfci.results import SCHEMA as RESULTS_SCHEMA
from hfci.selection import MODEL_OPTIONS, Selection, add_arguments

__all__ = [
    "CHART_NAME",
    "CONFIG_ONLY",
    "SCHEMA",
    "STATUSES",
    "SUMMARY_LIMIT",
    "CaseResult",
    "Report",
    "ReportError",
    "Source",
    "Status",
    "add_command",
    "build",
    "case_status",
    "check_name",
    "cmd_report",
    "comparison_baselines",
    "features_covered",
    "known_failure_reason",
    "load_sources",
    "markdown",
    "publish",
    "read_source",
    "runner_parity",
    "truncate",
]

# The statuses of one case on one device, worst first: its checks' outcomes decide it (see
# case_status), or the report's own Status.MISSING where the catalog expects a case no file has.
STATUSES = (Outcome.CRASHED, Outcome.FAILED, Outcome.XFAILED, Outcome.SKIPPED, Status.MISSING, Outcome.PASSED)
CONFIG_ONLY = "config only: no model class of its own"

SourceKind = Literal["results", "baseline"]


class ReportError(HfciError):
    """Input the report cannot use: no input at all, a file of another schema, a missing baseline."""


# -- reading -------------------------------------------------------------------------------------


@dataclass
class Source:
    """One input file: a results file of a run, or a baseline (outcomes only, no messages)."""

    path: Path
    kind: SourceKind
    device: str
    fingerprint: str
    records: list[Record]
    complete: bool = True
    # The transformers release the source was run with ("" where it does not say): a known
    # failure is matched against that release, not against the one installed where the report runs.
    transformers: str = ""

    @classmethod
    def from_results(cls, results: ResultsFile) -> Source:
        """A results file, as read by the one results reader."""
        env = results.meta.get("environment")
        version = env.get("transformers") if isinstance(env, Mapping) else None
        return cls(
            results.path,
            "results",
            results.device,
            results.fingerprint,
            results.records,
            results.complete,
            str(version or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """The source as the report's JSON lists it."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "complete": self.complete,
            "device": self.device,
            "fingerprint": self.fingerprint,
        }


def known_failure_reason(record: Record, transformers_version: str) -> str:
    """The models.toml reason for an expected failure, matched by the plugin's own matcher."""
    entry = data.known_failure(
        record.model_type, record.head, record.check, record.device, record.runner, transformers_version
    )
    return str(entry.get("reason", "")) if entry else ""


def _baseline_records(key: str, entry: baselines.CaseEntry, device: str, catalog: Catalog) -> list[Record]:
    """One baseline entry (``case`` or ``case@runner``) as records, one per check."""
    case, _, runner = key.partition("@")
    model_type, _, head = case.partition("/")
    info = catalog.records.get(model_type)
    records = []
    for index, (check, outcome) in enumerate(entry.checks.items()):
        perf = entry.perf if check == "benchmark" else None
        records.append(
            Record(
                case=case,
                model_type=model_type,
                head=head,
                device=device,
                check=check,
                outcome=str(outcome),
                # The case's duration once, on its first check, so totals stay right.
                duration=float(entry.duration or 0) if index == 0 else 0.0,
                category=info.category if info else "",
                tier=info.tier if info else "",
                metrics={"perf": perf} if perf else None,
                runner=runner or "eager",
            )
        )
    return records


def _baseline_source(path: Path, catalog: Catalog) -> Source:
    baseline = baselines.load(path)
    if baseline is None:
        raise ReportError(f"{path}: no such baseline file")
    env = baseline.environment
    when = ", ".join(x for x in (env.get("date"), env.get("commit") and f"commit {env['commit']}") if x)
    where = f"baseline {baseline.fingerprint}" + (f" ({when})" if when else "")
    # Known failures are matched against the release the baseline was measured with.
    version = str(env.get("transformers") or catalog.transformers_version)
    records = []
    for key, entry in baseline.cases.items():
        try:
            rows = _baseline_records(key, entry, baseline.device, catalog)
        except (TypeError, ValueError) as error:
            raise ReportError(f"{path}: case {key!r} is malformed ({error})") from None
        # Baselines keep outcomes, not messages: the known failure's reason, or where to look.
        records += [
            row
            if row.outcome == Outcome.PASSED
            else replace(
                row,
                reason=known_failure_reason(row, version)
                or f"{row.check} {row.outcome} in {where}; baselines keep outcomes only, "
                "the message is in that run's results",
            )
            for row in rows
        ]
    return Source(
        path,
        "baseline",
        baseline.device,
        baseline.fingerprint,
        records,
        transformers=str(env.get("transformers") or ""),
    )


_UNREADABLE = object()


def _declared_schema(path: Path) -> Any:
    """The schema a JSON object declares, only to hand the file to its reader (which validates it)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return _UNREADABLE
    return payload.get("schema") if isinstance(payload, dict) else _UNREADABLE


def read_source(path: Path, catalog: Catalog | None = None) -> Source:
    """One results or baseline file, told apart by its schema; anything unusable is one clear error."""
    schema = _declared_schema(path)
    if schema == baselines.SCHEMA:
        return _baseline_source(path, catalog or load_catalog())
    if schema is _UNREADABLE or schema == RESULTS_SCHEMA:
        # The results reader says what is wrong with a file that is not even a JSON object.
        return Source.from_results(read_results_file(path))
    raise ReportError(
        f"{path}: unknown schema {schema!r}; expected {RESULTS_SCHEMA!r} (a results file) "
        f"or {baselines.SCHEMA!r} (a baseline)"
    )


def load_sources(paths: Iterable[str | Path], catalog: Catalog | None = None) -> list[Source]:
    """Every results or baseline file named, or found under a named directory."""
    files: list[Path] = []
    for path in map(Path, paths):
        found = results_files([path])
        if path.is_dir() and not found:
            raise ReportError(f"{path}: no results-*.json files under this directory")
        files += found
    sources = [read_source(path, catalog) for path in files]
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


# -- one case on one device ----------------------------------------------------------------------


def check_name(record: Record) -> str:
    """The check as the report shows it: a runner's parity is ``parity@<runner>``, as in baselines."""
    return record.check if record.runner == "eager" else f"{record.check}@{record.runner}"


def _check_key(check: str) -> tuple[int, str]:
    # A runner's check (parity@sdpa) is none of CHECKS: after them, by name.
    return (CHECKS.index(check) if check in CHECKS else len(CHECKS), check)


def case_status(
    records: Sequence[Record], transformers_version: str | None = None
) -> tuple[Outcome | Status, str]:
    """A case's status from its checks' outcomes (a failure outweighs all), with the reason.

    Skipped checks beside passing ones (a head with no pipeline task) leave the case passing.
    ``transformers_version`` is the release the records were run with (default: the installed
    one); an expected failure without a message takes the reason models.toml gives for it.
    """
    ordered = sorted(records, key=lambda r: _check_key(check_name(r)))
    for outcome in (Outcome.CRASHED, Outcome.FAILED, Outcome.XFAILED):
        hit = next((r for r in ordered if r.outcome == outcome), None)
        if hit is not None:
            return outcome, _reason_of(hit, transformers_version)
    if any(r.outcome in (Outcome.PASSED, Outcome.XPASSED) for r in ordered):
        return Outcome.PASSED, ""
    if ordered:
        return Outcome.SKIPPED, _reason_of(ordered[0], transformers_version)
    return Status.MISSING, "no check of this case has a result"


def _reason_of(record: Record, transformers_version: str | None) -> str:
    reason = record.reason.strip()
    if not reason and record.outcome == Outcome.XFAILED:
        reason = known_failure_reason(record, transformers_version or load_catalog().transformers_version)
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


def _case_result(records: Sequence[Record], transformers_version: str) -> CaseResult:
    """The records of one (case, device), as the report shows them."""
    first = records[0]
    status, reason = case_status(records, transformers_version)
    return CaseResult(
        case=first.case,
        model_type=first.model_type,
        head=first.head,
        device=first.device,
        status=status,
        checks={check_name(r): r.outcome for r in sorted(records, key=lambda r: _check_key(check_name(r)))},
        reason=reason,
        duration=round(sum(r.duration for r in records), 4),
        latency=_latency(records),
        fixed=[check_name(r) for r in records if r.outcome == Outcome.XPASSED],
    )


def _not_run_reason(record: ModelRecord) -> str:
    skip = data.model_entry(record.model_type).get("skip")
    if skip:
        return f"skipped by models.toml: {skip}"
    return "no result: outside this run's selection, or its shard did not finish"


def _config_only_reason(record: ModelRecord, catalog: Catalog) -> str:
    parents = sorted(r.model_type for r in catalog if r.has_model and r.module == record.module)
    return CONFIG_ONLY + (f" (a sub-config of {', '.join(parents[:3])})" if parents else "")


# -- the model of the report ---------------------------------------------------------------------


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
    held = [(s, r) for s in sources for r in s.records if wanted is None or r.model_type in wanted]
    records = [r for _, r in held]
    devices = _devices(sources, records)
    cases = _case_results(held)
    universe = _universe(catalog, cases, scope, selection, wanted)
    if scope == "catalog":
        cases = _with_missing_cases(cases, universe, devices)
    model_types = _model_types(universe, cases, records, catalog)
    new_failures, newly_fixed, lost = _baseline_changes(compare or {}, records)
    return Report(
        sources=[s.to_dict() for s in sources],
        transformers=catalog.transformers_version,
        scope=scope,
        devices=devices,
        cases=cases,
        model_types=model_types,
        gaps=_gaps(cases, model_types, catalog),
        groups=_groups(cases, model_types),
        new_failures=new_failures,
        newly_fixed=newly_fixed,
        lost_coverage=lost,
        regressions=[record_row(r, detail=d) for r, d in verdicts(records, "regression")],
        improvements=[record_row(r, detail=d) for r, d in verdicts(records, "improvement")],
        skipped_checks=_skipped_in_passing(cases, records),
        baseline_notes=list(baseline_notes),
        runners=runner_parity(records),
        features=features_covered(cases, records),
    )


def _devices(sources: Sequence[Source], records: Sequence[Record]) -> list[str]:
    """The devices of the records, and of every results file (an empty run is still a column)."""
    devices = sorted({r.device for r in records} | {s.device for s in sources if s.kind == "results"})
    # "?": a results file that names no device and has no record to name one.
    return [d for d in devices if d != "?"] or sorted({s.device for s in sources})


def _case_results(held: Sequence[tuple[Source, Record]]) -> list[CaseResult]:
    """One result per (case, device), from the records the sources hold, sorted."""
    by_case: dict[tuple[str, str], list[Record]] = defaultdict(list)
    # A case's records come from one source in practice (a device's shards hold other cases).
    versions: dict[tuple[str, str], str] = {}
    for source, record in held:
        by_case[(record.case, record.device)].append(record)
        versions.setdefault((record.case, record.device), source.transformers)
    return [_case_result(by_case[key], versions[key]) for key in sorted(by_case)]


def _universe(
    catalog: Catalog,
    cases: Sequence[CaseResult],
    scope: str,
    selection: Sequence[ModelRecord] | None,
    wanted: set[str] | None,
) -> list[ModelRecord]:
    """The model types the report is about (see :func:`build` for the two scopes)."""
    if scope == "catalog":
        return list(selection) if selection is not None else list(catalog)
    present = {c.model_type for c in cases}
    modules = {catalog.records[m].module for m in present if m in catalog.records}
    universe = [r for r in catalog if r.model_type in present or (not r.has_model and r.module in modules)]
    return [r for r in universe if wanted is None or r.model_type in wanted]


def _with_missing_cases(
    cases: Sequence[CaseResult], universe: Sequence[ModelRecord], devices: Sequence[str]
) -> list[CaseResult]:
    """``cases`` and every head of the universe on every device that has no result, sorted."""
    seen = {(c.case, c.device) for c in cases}
    missing = []
    for record in universe:
        if not record.has_model:
            continue
        for head in record.heads:
            for device in devices:
                case = f"{record.model_type}/{head.name}"
                if (case, device) not in seen:
                    missing.append(
                        CaseResult(
                            case,
                            record.model_type,
                            head.name,
                            device,
                            Status.MISSING,
                            {},
                            _not_run_reason(record),
                        )
                    )
    return sorted([*cases, *missing], key=lambda c: (c.case, c.device))


def _model_type_info(record: ModelRecord) -> dict[str, Any]:
    return {
        "category": record.category,
        "family": record.family,
        "tier": record.tier,
        "config_only": not record.has_model,
        "heads": [h.name for h in record.heads],
    }


def _model_types(
    universe: Sequence[ModelRecord], cases: Sequence[CaseResult], records: Sequence[Record], catalog: Catalog
) -> dict[str, dict[str, Any]]:
    """Model type -> its category, family, tier and heads; for the universe and every case's."""
    model_types = {record.model_type: _model_type_info(record) for record in universe}
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
    return model_types


def _gap_key(gap: Mapping[str, Any]) -> tuple[int, str, str, str]:
    # Worst first; a config-only model type, which has nothing to run, after every case.
    status = STATUSES.index(gap["status"]) if gap["status"] in STATUSES else len(STATUSES)
    return (status, gap["model_type"], gap["case"] or "", gap["device"] or "")


def _gaps(
    cases: Sequence[CaseResult], model_types: Mapping[str, Mapping[str, Any]], catalog: Catalog
) -> list[dict[str, Any]]:
    """Every config-only model type and every case not passing, with its reason, worst first."""
    config_only = [
        {
            "model_type": model_type,
            "case": None,
            "device": None,
            "status": Status.CONFIG_ONLY,
            "reason": _config_only_reason(catalog.records[model_type], catalog),
        }
        for model_type, info in sorted(model_types.items())
        if info["config_only"]
    ]
    failing = [
        {
            "model_type": case.model_type,
            "case": case.case,
            "device": case.device,
            "status": case.status,
            "reason": case.reason,
        }
        for case in cases
        if case.status != Outcome.PASSED
    ]
    return sorted(config_only + failing, key=_gap_key)


def _baseline_changes(
    compare: Mapping[str, Mapping[str, Any]], records: Sequence[Record]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The checks that newly fail, those newly fixed, and the coverage lost (passed, now skipped
    or expected to fail), against each device's baseline."""
    fresh: list[dict[str, Any]] = []
    fixed: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    for device, baseline in compare.items():
        mine = [r for r in records if r.device == device]
        fresh += [record_row(r) for r in baselines.new_failures(baseline, mine)]
        fixed += [record_row(r, outcome=r.outcome) for r in baselines.newly_fixed(baseline, mine)]
        lost += [
            record_row(r, now=f"{r.outcome}: {r.reason}") for r in baselines.lost_coverage(baseline, mine)
        ]
    return fresh, fixed, lost


def _skipped_in_passing(cases: Sequence[CaseResult], records: Sequence[Record]) -> list[tuple[str, int]]:
    """Skip reasons of the checks skipped inside passing cases, most frequent first."""
    passing = {(c.case, c.device) for c in cases if c.status == Outcome.PASSED}
    return Counter(
        r.reason or "no reason recorded"
        for r in records
        if r.outcome == Outcome.SKIPPED and (r.case, r.device) in passing
    ).most_common()


# The paths a passing case proves beyond its forward: each check's name, as the report says it.
_PATHS = {"padding": "padded batches", "cache": "decoding with the cache", "training": "a training step"}


def features_covered(cases: Sequence[CaseResult], records: Sequence[Record]) -> dict[str, dict[str, int]]:
    """What "passed" covered: per feature of the tiny configs (grouped-query attention, a sliding
    window, mixed layer types, mixture of experts; each forward records its own) and per path a
    check proves (padded batches, the cache, a training step), the cases that exercise it and
    how many of them pass."""
    passing = {(c.case, c.device) for c in cases if c.status == Outcome.PASSED}
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for record in records:
        where = (record.case, record.device)
        if record.check == "forward" and record.runner == "eager":
            for feature in (record.metrics or {}).get("features", ()):
                found[feature].add(where)
        if record.check in _PATHS and record.outcome in (Outcome.PASSED, Outcome.XPASSED, Outcome.FAILED):
            found[_PATHS[record.check]].add(where)
    return {
        name: {"cases": len(where), "passing": len(where & passing)}
        for name, where in sorted(found.items(), key=lambda kv: (kv[0] in _PATHS.values(), kv[0]))
    }


def _parity_row(counts: Mapping[Outcome, int]) -> dict[str, Any]:
    # A skip (no sdpa support, a missing package) is counted but not held against the runner.
    tried = sum(
        counts[o] for o in (Outcome.PASSED, Outcome.FAILED, Outcome.CRASHED, Outcome.XFAILED, Outcome.XPASSED)
    )
    return {
        "cases": sum(counts.values()),
        **{o: counts[o] for o in Outcome},
        "pass_rate": round(counts[Outcome.PASSED] / tried, 4) if tried else None,
    }


def runner_parity(records: Iterable[Record]) -> dict[str, dict[str, dict[str, Any]]]:
    """Runner -> category (and 'all', last) -> parity outcomes against eager, with the pass rate.

    The rate is over the cases the runner was tried on: a skip is counted but not held against it.
    """
    table: dict[str, dict[str, Counter[Outcome]]] = defaultdict(lambda: defaultdict(Counter))
    for record in records:
        if record.runner != "eager" and record.check == "parity":
            for group in (record.category or "other", "all"):
                table[record.runner][group][record.outcome] += 1
    return {
        runner: {
            group: _parity_row(counts)
            for group, counts in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0]))
        }
        for runner, groups in sorted(table.items())
    }


def _group_row() -> dict[str, Any]:
    return {"model_types": 0, "config_only": 0, "cases": 0, **dict.fromkeys(STATUSES, 0), "pass_rate": None}


def _group_table(
    axis: str, cases: Sequence[CaseResult], model_types: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """One axis (category, family, tier, or 'all'): its rows by name, sorted."""
    table: dict[str, dict[str, Any]] = defaultdict(_group_row)
    for info in model_types.values():
        row = table["all" if axis == "all" else info[axis]]
        row["model_types"] += 1
        row["config_only"] += bool(info["config_only"])
    for case in cases:
        row = table["all" if axis == "all" else model_types[case.model_type][axis]]
        row["cases"] += 1
        row[case.status] += 1
    for row in table.values():
        row["pass_rate"] = round(row[Outcome.PASSED] / row["cases"], 4) if row["cases"] else None
    return dict(sorted(table.items()))


def _groups(
    cases: Sequence[CaseResult], model_types: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """By category, family and tier (and 'all'): model types, config-only ones, case statuses, pass rate."""
    return {axis: _group_table(axis, cases, model_types) for axis in ("category", "family", "tier", "all")}


# -- GitHub --------------------------------------------------------------------------------------


def _failure_annotations(report: Report) -> list[github.Annotation]:
    """The failing cases, those failing anew against the baseline first."""
    new = {(r["case"], r["device"], r["check"]) for r in report.new_failures}

    def is_new(case: CaseResult) -> bool:
        return any((case.case, case.device, check) in new for check in case.checks)

    failures = sorted(
        (c for c in report.cases if c.status in (Outcome.FAILED, Outcome.CRASHED)),
        key=lambda c: (not is_new(c), c.case, c.device),
    )
    return [
        github.Annotation(
            c.reason, title=f"{c.case} [{c.device}]" + (" new failure" if is_new(c) else " failed")
        )
        for c in failures
    ]


def publish(report: Report, markdown_text: str) -> None:
    """The job summary (truncated under 1 MiB) and annotations: failures, then regressions."""
    github.append_summary(truncate(markdown_text))
    github.annotate("error", _failure_annotations(report))
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
    """``hfci report``: build the report of the sources, then print, write or publish it."""
    catalog = load_catalog()
    chosen = Selection.from_namespace(args, MODEL_OPTIONS)
    selection = chosen.records(catalog) if chosen != Selection() else None
    sources = load_sources(args.sources or ["results"], catalog)
    compare, notes = comparison_baselines(args.baseline, sources)
    report = build(sources, catalog, compare, args.scope, selection, notes)
    text = markdown(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
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
    add_arguments(parser, MODEL_OPTIONS)
    parser.set_defaults(func=cmd_report)
