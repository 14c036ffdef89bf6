"""GitHub Actions: step outputs, the job summary and annotations.

The only module that talks to Actions (through github-action-utils). Outside Actions, or when
a runner file is missing, every function prints what it would have sent instead, so the same
commands work on a laptop and never crash for want of Actions' environment.

``python -m hfci.github summary RESULTS...`` writes the job summary of a finished model run.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["error", "warning", "notice"]

# GitHub shows at most 10 annotations of each kind per step and drops the rest without a word.
ANNOTATION_CAP = 10

_emitted: Counter[str] = Counter()


def in_actions() -> bool:
    """Whether this process runs inside a GitHub Actions job."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _runner_file(variable: str) -> bool:
    """Whether Actions gave us the runner file behind ``variable`` (GITHUB_OUTPUT, ...)."""
    return in_actions() and bool(os.environ.get(variable))


def set_output(name: str, value: str) -> None:
    """Set a step output (``steps.<id>.outputs.<name>``); prints ``name=value`` outside Actions."""
    if _runner_file("GITHUB_OUTPUT"):
        import github_action_utils as gha

        gha.set_output(name, value)
    else:
        print(f"{name}={value}")


def append_summary(markdown: str) -> None:
    """Append Markdown to the job summary; prints it outside Actions."""
    if _runner_file("GITHUB_STEP_SUMMARY"):
        import github_action_utils as gha

        gha.append_job_summary(markdown)
    else:
        print(markdown)


@dataclass(frozen=True)
class Annotation:
    """One message for the run's annotations, optionally pinned to a file and line."""

    message: str
    title: str | None = None
    file: str | None = None
    line: int | None = None


def _emit(kind: Kind, note: Annotation) -> None:
    if in_actions():
        import github_action_utils as gha

        emit = {"error": gha.error, "warning": gha.warning, "notice": gha.notice}[kind]
        emit(note.message, title=note.title, file=note.file, line=note.line)
    else:
        where = (
            f"{note.file}:{note.line}: " if note.file and note.line else f"{note.file}: " if note.file else ""
        )
        title = f"{note.title}: " if note.title else ""
        print(f"{kind}: {where}{title}{note.message}", file=sys.stderr)


def annotate(kind: Kind, notes: Iterable[Annotation | str], cap: int = ANNOTATION_CAP) -> int:
    """Emit annotations of one kind, at most ``cap`` per step (this process) in all.

    Past the cap, the last slot says how many more there were instead of letting GitHub drop
    them silently. Returns how many were not emitted.
    """
    pending = [note if isinstance(note, Annotation) else Annotation(note) for note in notes]
    budget = cap - _emitted[kind]
    if len(pending) <= budget:
        shown, hidden = pending, 0
    else:
        shown = pending[: max(budget - 1, 0)]
        hidden = len(pending) - len(shown)
    for note in shown:
        _emit(kind, note)
    _emitted[kind] += len(shown)
    if hidden:
        more = Annotation(f"{hidden} more {kind}(s) not annotated; see the job summary and the log")
        if _emitted[kind] < cap:
            _emit(kind, more)
            _emitted[kind] += 1
        else:
            print(f"{kind}: {more.message}", file=sys.stderr)
    return hidden


def error(message: str, title: str | None = None, file: str | None = None, line: int | None = None) -> None:
    """One error annotation (counted against the per-step cap)."""
    annotate("error", [Annotation(message, title, file, line)])


def warning(message: str, title: str | None = None, file: str | None = None, line: int | None = None) -> None:
    """One warning annotation (counted against the per-step cap)."""
    annotate("warning", [Annotation(message, title, file, line)])


# -- the summary of a finished model run ---------------------------------------------------------


def _results_records(paths: Iterable[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record of every results file under ``paths``, and the problems met reading them."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    files: list[Path] = []
    for path in map(Path, paths):
        files += sorted(path.rglob("results-*.json")) if path.is_dir() else [path]
    for path in files:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            records += [{"device": payload.get("device", "?"), **r} for r in payload.get("records", [])]
            if payload.get("complete") is False:
                problems.append(
                    f"{path}: partial, its run stopped before the end (killed at the job's timeout?); "
                    f"{len(payload.get('records', []))} checks recorded, the rest of its selection has no result"
                )
        except (OSError, ValueError, AttributeError, TypeError) as problem:
            problems.append(f"{path}: {problem}")
    return records, problems


def results_summary(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: outcomes per device, then the failing cases with their reasons."""
    if not records:
        return "### hfci models\n\nNo results: no shard wrote a results file."
    outcomes = sorted({str(r.get("outcome", "?")) for r in records})
    lines = [
        "### hfci models",
        "",
        "| device | " + " | ".join(outcomes) + " | cases | minutes |",
        "|---|" + "---:|" * (len(outcomes) + 2),
    ]
    for device in sorted({str(r["device"]) for r in records}):
        mine = [r for r in records if r["device"] == device]
        counts = Counter(str(r.get("outcome", "?")) for r in mine)
        minutes = sum(float(r.get("duration") or 0) for r in mine) / 60
        cases = len({r.get("case") for r in mine})
        cells = " | ".join(str(counts[o]) for o in outcomes)
        lines.append(f"| {device} | {cells} | {cases} | {minutes:.1f} |")
    failed = [r for r in records if r.get("outcome") in ("failed", "error")]
    if failed:
        lines += [
            "",
            f"#### {len(failed)} failing checks",
            "",
            "| case | device | check | reason |",
            "|---|---|---|---|",
        ]
        for r in failed[:200]:
            reason = str(r.get("reason", "")).replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| `{r.get('case')}` | {r['device']} | {r.get('check', '')} | {reason} |")
        if len(failed) > 200:
            lines.append(f"\n... and {len(failed) - 200} more; see the results artifacts.")
    return "\n".join(lines)


def report_results(paths: Sequence[str | Path]) -> int:
    """Write the job summary and annotations for results files; the number of failing checks."""
    records, problems = _results_records(paths)
    append_summary(results_summary(records))
    annotate("warning", problems)
    failed = [r for r in records if r.get("outcome") in ("failed", "error")]
    annotate(
        "error",
        [
            Annotation(
                str(r.get("reason") or r.get("outcome")),
                title=f"{r.get('case')} [{r['device']}] {r.get('check')}",
            )
            for r in failed
        ],
    )
    return len(failed)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "summary":
        print("usage: python -m hfci.github summary RESULTS_FILE_OR_DIR...", file=sys.stderr)
        return 2
    return 1 if report_results(args[1:]) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
