"""GitHub Actions: step outputs, the job summary and annotations.

The only module that talks to Actions (through github-action-utils). Outside Actions, or when
a runner file is missing, every function prints what it would have sent instead, so the same
commands work on a laptop and never crash for want of Actions' environment.

``python -m hfci.github summary RESULTS...`` writes the job summary of a finished model run.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hfci.report_sections import failing_checks, outcomes_by_device
from hfci.results import Record, ResultsError, read_results_file, results_files

__all__ = [
    "ANNOTATION_CAP",
    "Annotation",
    "Kind",
    "annotate",
    "append_summary",
    "error",
    "in_actions",
    "main",
    "report_results",
    "results_summary",
    "set_output",
    "warning",
]

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


def _read_results(paths: Iterable[str | Path]) -> tuple[list[Record], list[str]]:
    """Every record of every results file under ``paths``, and the problems met reading them.

    A file that cannot be read is a problem to show, not a reason to lose the other shards'
    summary; a partial file (its run stopped early) is one too, though its records count.
    """
    records: list[Record] = []
    problems: list[str] = []
    for path in paths:
        try:
            files = results_files([path])
        except ResultsError as problem:
            problems.append(str(problem))
            continue
        for file in files:
            try:
                results = read_results_file(file)
            except ResultsError as problem:
                problems.append(str(problem))
                continue
            records += results.records
            if not results.complete:
                problems.append(
                    f"{file}: partial, its run stopped before the end (killed at the job's timeout?); "
                    f"{len(results.records)} checks recorded, the rest of its selection has no result"
                )
    return records, problems


def results_summary(records: Sequence[Record]) -> str:
    """Markdown: outcomes per device, then the failing checks with their reasons."""
    if not records:
        return "### hfci models\n\nNo results: no shard wrote a results file."
    return "\n".join(["### hfci models", *outcomes_by_device(records), *failing_checks(records)])


def report_results(paths: Sequence[str | Path]) -> int:
    """Write the job summary and annotations for results files; the number of failing checks."""
    records, problems = _read_results(paths)
    append_summary(results_summary(records))
    annotate("warning", problems)
    failed = [r for r in records if r.outcome.failing]
    annotate(
        "error",
        [Annotation(r.reason or str(r.outcome), title=f"{r.case} [{r.device}] {r.check}") for r in failed],
    )
    return len(failed)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hfci.github summary RESULTS...``: 1 if a check failed, 2 on a usage error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "summary":
        print("usage: python -m hfci.github summary RESULTS_FILE_OR_DIR...", file=sys.stderr)
        return 2
    return 1 if report_results(args[1:]) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
