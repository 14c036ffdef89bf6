"""The pytest plugin (entry point ``pytest11: hfci``): options, markers, and the session object.

Any test function that takes the ``hfci_case`` argument is parametrized over the selected
(model type, head, device) cases; :mod:`hfci.pytest.suite` holds the checks as such tests. The
hooks that need state live on the :class:`~hfci.pytest.session.HfciSession` registered here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import uuid
from pathlib import Path

import pytest

from hfci.catalog import CATEGORIES, TIERS, load_catalog
from hfci.checkpoints import selected_checkpoints
from hfci.devices import KNOWN_DEVICES, best_device, resolve_device
from hfci.errors import HfciError, validate_choices
from hfci.project import folder, tool_table
from hfci.pytest.cases import marker_name
from hfci.pytest.isolation import MemoryCeiling, default_max_memory, note_path, parse_memory
from hfci.pytest.session import SESSION, HfciSession
from hfci.runners import load as load_runner
from hfci.selection import Selection, add_pytest_options

__all__ = ["hfci_session", "pytest_addoption", "pytest_configure"]


@pytest.fixture
def hfci_session(request: pytest.FixtureRequest) -> HfciSession:
    """The session object the plugin registered: built cases, baselines, the re-check queue."""
    return request.config.stash[SESSION]


def pytest_addoption(parser: pytest.Parser) -> None:
    """hfci's options: the selection (declared in :mod:`hfci.selection`), then the run's own."""
    group = parser.getgroup("hfci", "hfci model tests")
    group.addoption("--run-model-tests", action="store_true", help="run the model tests (skipped otherwise)")
    add_pytest_options(group)
    group.addoption(
        "--results-dir",
        default=None,
        help="where results-<device>.json is written (default: [tool.hfci] results, else results)",
    )
    group.addoption(
        "--baselines-dir",
        default=None,
        help="where <fingerprint>.json baselines live (default: [tool.hfci] baselines, else baselines)",
    )
    group.addoption(
        "--baseline-tolerance", type=float, default=0.20, help="allowed latency slowdown before a regression"
    )
    group.addoption("--memory-tolerance", type=float, default=0.05, help="allowed peak-memory growth")
    group.addoption("--no-baseline-check", action="store_true", help="measure, but compare with no baseline")
    group.addoption(
        "--no-benchmark",
        action="store_true",
        help="leave test_benchmark out: the correctness checks only, at a fraction of the time",
    )
    group.addoption(
        "--regressions",
        choices=("fail", "report"),
        default="fail",
        help="fail the run on a performance regression (default), or only report it",
    )
    group.addoption("--update-baselines", action="store_true", help="rewrite the baselines with this run")
    group.addoption(
        "--baseline-delta",
        default=None,
        metavar="DIR",
        help="with --update-baselines: leave the baselines as they are and write only the cases this "
        "run measured to DIR/<fingerprint>.<shard or all>.delta.json, for `hfci baselines merge|commit`",
    )
    group.addoption(
        "--recheck-after",
        type=float,
        default=60.0,
        help="seconds between a suspected latency regression and its re-check at the session's end",
    )
    group.addoption(
        "--max-memory",
        default="auto",
        metavar="SIZE",
        help="stop a case whose worker grows past SIZE resident (e.g. 6GiB; 0: no ceiling; auto, the "
        "default: four fifths of the machine's memory shared by the xdist workers); Linux only",
    )
    group.addoption(
        "--results-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="rewrite results-<device>.json, marked partial, at most this often during the run, "
        "so that a killed run keeps what it finished (0: after every check)",
    )


def _add_markers(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model: a model test (needs --run-model-tests)")
    config.addinivalue_line("markers", "checkpoint: a model test of a real checkpoint (--checkpoint)")
    for category in CATEGORIES:
        config.addinivalue_line("markers", f"{marker_name(category)}: {category} models")
    for device in KNOWN_DEVICES:
        config.addinivalue_line("markers", f"{device}: runs on {device}")
    for tier in TIERS:
        config.addinivalue_line("markers", f"tier_{tier}: {tier} priority models")
    for family in sorted({r.family for r in load_catalog()}):
        config.addinivalue_line("markers", f"family_{marker_name(family)}: {family} models")


def _devices(config: pytest.Config, selection: Selection) -> list[str]:
    named = list(selection.device)
    if not config.getoption("run_model_tests"):
        # Collecting only: the name must be valid, the hardware need not be here.
        validate_choices("device", named, KNOWN_DEVICES)
        return named or ["cpu"]
    return [resolve_device(d) for d in named] if named else [best_device()]


def _isolate(config: pytest.Config, session: HfciSession) -> None:
    """Crash isolation: the workers' memory ceiling, and a controller that survives their deaths."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        text = config.getoption("max_memory")
        workers = int(workerinput.get("workercount", 1))
        limit = default_max_memory(workers) if text == "auto" else parse_memory(text)
        MemoryCeiling(limit, note_path(workerinput["testrunuid"], workerinput["workerid"])).start()
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, session.terminate)
    if (
        getattr(config.option, "dist", "no") != "no"
        and getattr(config.option, "maxworkerrestart", "") is None
    ):
        # Each crash costs its own case only, so a run of N cases needs at most N replacements.
        config.option.maxworkerrestart = str(len(session.cases()) + 1)


SUITE = Path(__file__).with_name("suite.py").resolve()


def _collect_the_suite(config: pytest.Config) -> None:
    """``pytest --run-model-tests`` in any project runs the model tests beside its own.

    Without the flag nothing is added: a project's ``pytest`` stays its own, not hundreds of
    skipped model tests. A run that names the suite (``--pyargs hfci.pytest.suite``, as ``hfci
    run`` does) gets it once.
    """
    for arg in config.args:
        where = arg.split("::")[0]
        if where.startswith("hfci.pytest.suite") or Path(where).resolve() == SUITE:
            return
    config.args.append(str(SUITE))


def pytest_configure(config: pytest.Config) -> None:
    """Markers, validation of the selection, and the session object for this process."""
    try:
        _add_markers(config)
        selection = Selection.from_values(config.getoption)
        selection.validate(load_catalog())
        if selection.checkpoint or config.getoption("run_model_tests"):
            # A bad --checkpoint or [tool.hfci.checkpoints] entry is one usage error, not a failed
            # collection; a project's plain pytest (no flag) does not hash its checkpoints.
            selected_checkpoints(selection.checkpoint, load_catalog())
        devices = _devices(config, selection)
        for name in selection.runner:
            load_runner(name)
        if config.getoption("max_memory") != "auto":
            parse_memory(config.getoption("max_memory"))
        tool_table("models")  # the project's [tool.hfci], checked before anything reads it
        for name in ("results", "baselines"):
            if config.getoption(f"{name}_dir") is None:
                setattr(config.option, f"{name}_dir", str(folder(name)))
        if config.getoption("baseline_delta") and not config.getoption("update_baselines"):
            raise HfciError(
                f"--baseline-delta {config.getoption('baseline_delta')} needs --update-baselines: "
                "a delta is what a refresh measured"
            )
    except HfciError as error:
        raise pytest.UsageError(str(error)) from None
    if getattr(config.option, "testrunuid", "") is None and not hasattr(config, "workerinput"):
        # Chosen here rather than by xdist, so the controller knows the workers' machine lock too.
        config.option.testrunuid = uuid.uuid4().hex
    session = HfciSession(config, selection, devices)
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "hfci-session")
    if config.getoption("run_model_tests"):
        _isolate(config, session)
        # In the workers too: xdist hands them the command line as typed, not these arguments.
        _collect_the_suite(config)
        import torch

        # One thread per xdist worker: workers are the parallelism, threads would oversubscribe.
        if os.environ.get("PYTEST_XDIST_WORKER"):
            torch.set_num_threads(1)
        with contextlib.suppress(Exception):
            from transformers.utils import logging

            logging.disable_progress_bar()
            logging.set_verbosity_error()
