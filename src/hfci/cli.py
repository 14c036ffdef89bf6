"""``hfci``: the command line that noxfile.py and the workflows call."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from hfci import baselines_cli, diff, matrix, report, scaffold
from hfci.catalog import CATEGORIES, ModelRecord, entries_note, load_catalog
from hfci.errors import HfciError, validate_choices
from hfci.selection import CHANGED_SINCE, MODEL_OPTIONS, OPTIONS, Selection, add_arguments

__all__ = [
    "build_parser",
    "cmd_catalog",
    "cmd_run",
    "main",
    "suite_command",
    "supervise",
]


def _catalog_rows(records: Sequence[ModelRecord]) -> list[dict[str, str]]:
    return [
        {
            "model_type": r.model_type,
            "category": r.category,
            "family": r.family,
            "tier": r.tier,
            "heads": str(len(r.heads)) if r.has_model else "config only",
        }
        for r in records
    ]


def _table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no model types match)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)


def _markdown(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_No model types match._"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def cmd_catalog(args: argparse.Namespace) -> int:
    """``hfci catalog``: the selected model types, as a table, markdown or JSON."""
    catalog = load_catalog()
    if args.unmatched_tiers:
        for tier, name, model_type in catalog.unmatched_tiers:
            print(f"{tier}\t{name}\t{model_type}")
        return 0
    if args.unmatched_entries:
        for model_type, why in catalog.unmatched_entries:
            print(f"{model_type}\t{why}")
        return 0
    selection = Selection.from_namespace(args, (*MODEL_OPTIONS, CHANGED_SINCE))
    records = selection.records(catalog)
    impact = selection.impact(catalog)
    if args.format == "json":
        payload = {
            "transformers": catalog.transformers_version,
            "count": len(records),
            **({"changed_since": impact.describe()} if impact else {}),
            "unmatched_tiers": [
                {"tier": t, "name": n, "model_type": m} for t, n, m in catalog.unmatched_tiers
            ],
            "unmatched_entries": [{"model_type": m, "reason": why} for m, why in catalog.unmatched_entries],
            "models": [r.to_dict() for r in records],
        }
        print(json.dumps(payload, indent=2, sort_keys=True))
    elif args.format == "md":
        print(_markdown(_catalog_rows(records)))
    else:
        print(_table(_catalog_rows(records)))
        print(f"\n{len(records)} of {len(catalog)} model types (transformers {catalog.transformers_version})")
        if catalog.unmatched_entries:
            print(entries_note(catalog))
        if impact:
            print(impact.describe())
    return 0


def suite_command() -> list[str]:
    """The pytest command line that runs the shipped model suite, before any selection."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "hfci.pytest.suite",
        "--run-model-tests",
        "-p",
        "no:cacheprovider",
    ]


# How long a stopped run may take to write its partial results before it is killed.
STOP_GRACE = 20.0


def supervise(command: Sequence[str], grace: float = STOP_GRACE) -> int:
    """Run ``command``; SIGTERM or SIGINT here asks it to stop (SIGTERM, which the plugin turns
    into an interrupt that writes partial results), and a child not gone in ``grace`` s is killed.
    """
    child = subprocess.Popen(list(command))

    def later(seconds: float, action: Callable[[], None]) -> None:
        # Not a wait in the handler: the interrupted child.wait() below holds the lock it needs.
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()

    def stop(signum: int, frame: Any) -> None:
        # Ctrl-C in a terminal reaches the child too: give its own interrupt a second to start,
        # so that the SIGTERM finds it stopping (and is ignored) instead of cutting it short.
        later(1.0 if signum == signal.SIGINT else 0.0, child.terminate)
        later(grace, child.kill)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Run the model suite under pytest-xdist; the plugin validates the selection and summarises.

    Leading bare words are categories (``hfci run vision audio -k vit``); what follows that hfci
    does not know passes on to pytest.

    Every case runs in a worker process, ``--workers 0`` included (one worker): only a process
    boundary survives a case that segfaults, aborts or runs out of memory.
    """
    words = list(itertools.takewhile(lambda arg: not arg.startswith("-"), extra))
    if words:
        # `hfci run vision audio -k vit`: leading bare words are categories, as in `nox -s models`.
        validate_choices("category", words, CATEGORIES)
        args.category = [*(args.category or []), *words]
        extra = extra[len(words) :]
    selection = Selection.from_namespace(args)
    impact = selection.impact(load_catalog())
    if impact is not None:
        print(impact.describe(), flush=True)
        if not selection.records(load_catalog()):
            # Nothing moved: pytest would collect nothing and call that an error.
            print("hfci run: nothing to run: no selected model type's transformers sources moved")
            return 0
    command = suite_command() + selection.argv()
    # Each case's checks share one worker (loadgroup), so its tiny model is built once.
    workers = "1" if args.workers == "0" else args.workers
    command += ["-n", workers, "--dist", "loadgroup"]
    command += ["--timeout", str(args.timeout), "-q", "-rN", *extra]
    if args.results_dir:
        command += ["--results-dir", args.results_dir]
    print("+ " + " ".join(command), flush=True)
    return supervise(command)


def build_parser() -> argparse.ArgumentParser:
    """The ``hfci`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="hfci", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    catalog = sub.add_parser("catalog", help="list the model types of the installed transformers")
    add_arguments(catalog, (*MODEL_OPTIONS, CHANGED_SINCE))
    catalog.add_argument("--format", choices=("table", "json", "md"), default="table")
    catalog.add_argument(
        "--unmatched-tiers", action="store_true", help="list tier entries that match no installed model type"
    )
    catalog.add_argument(
        "--unmatched-entries",
        action="store_true",
        help="list models.toml entries that do not apply to the installed transformers",
    )
    catalog.set_defaults(func=cmd_catalog)

    run = sub.add_parser(
        "run",
        help="run the model tests (unknown options pass through to pytest)",
        description=cmd_run.__doc__,
    )
    add_arguments(run, OPTIONS)
    run.add_argument(
        "--workers",
        default="auto",
        help="worker processes (auto: one per core; 0 or 1: one), each case isolated in one",
    )
    run.add_argument("--timeout", type=int, default=300, help="seconds before a hanging check fails")
    run.add_argument(
        "--results-dir",
        default=None,
        help="where results-<device>.json goes (default: the project's results folder)",
    )
    run.set_defaults(func=cmd_run, passthrough=True)

    # Each of these modules registers its own command and arguments.
    matrix.add_command(sub)
    report.add_command(sub)
    diff.add_command(sub)
    baselines_cli.add_command(sub)
    scaffold.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hfci``; an ``HfciError`` is one line on stderr and exit status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    func: Callable[..., int] = args.func
    try:
        return func(args, extra) if getattr(args, "passthrough", False) else func(args)
    except HfciError as error:
        print(f"hfci: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `hfci catalog | head` closed the pipe: stop quietly, as other command-line tools do.
        # stdout is pointed at /dev/null so that the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
