"""The pytest plugin: catalog cases as parametrized tests, markers, gating and selection.

Any test function that takes the ``hfci_case`` argument is parametrized over the selected
(model type, head, device) cases. ``hfci.suite`` holds the checks as such tests.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hfci import data
from hfci.catalog import CATEGORIES, TIERS, ModelRecord, load_catalog
from hfci.errors import HfciError
from hfci.results import Record, summary, verdicts, write_results

_STASH_RECORDS = pytest.StashKey[list]()
_STASH_DEVICE = pytest.StashKey[str]()


@dataclass(frozen=True)
class CaseSpec:
    """One parametrization: a head of a model type on a device."""

    record: ModelRecord
    head: str
    device: str
    runner: str = "eager"

    @property
    def case(self) -> str:
        return f"{self.record.model_type}/{self.head}"

    @property
    def id(self) -> str:
        suffix = "" if self.runner == "eager" else f"-{self.runner}"
        return f"{self.case}-{self.device}{suffix}"


def marker_name(value: str) -> str:
    return value.replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hfci", "hfci model tests")
    group.addoption("--run-model-tests", action="store_true", help="run the model tests (skipped otherwise)")
    group.addoption("--category", action="append", default=[], help=f"one of {', '.join(CATEGORIES)}")
    group.addoption("--tier", action="append", default=[], help=f"one of {', '.join(TIERS)}")
    group.addoption("--family", action="append", default=[], help="e.g. encoder-only, vision-encoder")
    group.addoption("--model", action="append", default=[], help="a model type, e.g. xlm-roberta")
    group.addoption(
        "--device", action="append", default=[], help="cpu, cuda, mps, xpu (default: best present)"
    )
    group.addoption(
        "--runner",
        action="append",
        default=[],
        help="eager (default), sdpa, compile, bf16, fp16, export, or yours",
    )
    group.addoption(
        "--one-head",
        action="store_true",
        help="one head per model type (its bare Model where it has one): every architecture once",
    )
    group.addoption("--shard", default=None, help="run only shard INDEX/COUNT of the selection, e.g. 3/8")
    group.addoption("--results-dir", default="results", help="where results-<device>.json is written")
    group.addoption("--baselines-dir", default="baselines", help="where baselines/<fingerprint>.json live")
    group.addoption(
        "--baseline-tolerance", type=float, default=0.20, help="allowed latency slowdown before a regression"
    )
    group.addoption("--memory-tolerance", type=float, default=0.05, help="allowed peak-memory growth")
    group.addoption("--no-baseline-check", action="store_true", help="measure, but compare with no baseline")
    group.addoption(
        "--regressions",
        choices=("fail", "report"),
        default="fail",
        help="fail the run on a performance regression (default), or only report it",
    )
    group.addoption("--update-baselines", action="store_true", help="rewrite the baselines with this run")
    group.addoption(
        "--recheck-after",
        type=float,
        default=60.0,
        help="seconds between a suspected latency regression and its re-check at the session's end",
    )
    group.addoption(
        "--checkpoint",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="rewrite results-<device>.json, marked partial, at most this often during the run, "
        "so that a killed run keeps what it finished (0: after every check)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model: a model test (needs --run-model-tests)")
    for category in CATEGORIES:
        config.addinivalue_line("markers", f"{marker_name(category)}: {category} models")
    for device in ("cpu", "cuda", "mps", "xpu"):
        config.addinivalue_line("markers", f"{device}: runs on {device}")
    for tier in TIERS:
        config.addinivalue_line("markers", f"tier_{tier}: {tier} priority models")
    try:
        families = sorted({r.family for r in load_catalog()})
        for family in families:
            config.addinivalue_line("markers", f"family_{marker_name(family)}: {family} models")
        _validate(config)
    except HfciError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[_STASH_RECORDS] = []
    if getattr(config.option, "testrunuid", "") is None and not hasattr(config, "workerinput"):
        # Chosen here rather than by xdist, so the controller knows the workers' machine lock too.
        import uuid

        config.option.testrunuid = uuid.uuid4().hex
    if config.getoption("run_model_tests"):
        import torch

        # One thread per xdist worker: workers are the parallelism, threads would oversubscribe.
        if os.environ.get("PYTEST_XDIST_WORKER"):
            torch.set_num_threads(1)
        with contextlib.suppress(Exception):
            from transformers.utils import logging

            logging.disable_progress_bar()
            logging.set_verbosity_error()


def _validate(config: pytest.Config) -> None:
    catalog = load_catalog()
    catalog.select(
        config.getoption("category"),
        config.getoption("family"),
        config.getoption("tier"),
        config.getoption("model"),
    )
    if config.getoption("shard"):
        from hfci.matrix import parse_shard

        parse_shard(config.getoption("shard"))
    config.stash[_STASH_DEVICE] = ",".join(_devices(config))
    from hfci import runners

    for name in config.getoption("runner"):
        runners.load(name)


def _devices(config: pytest.Config) -> list[str]:
    from hfci.devices import KNOWN_DEVICES, best_device, resolve_device
    from hfci.errors import validate_choices

    named = config.getoption("device")
    if not config.getoption("run_model_tests"):
        # Collecting only: the name must be valid, the hardware need not be here.
        validate_choices("device", named, KNOWN_DEVICES)
        return named or ["cpu"]
    return [resolve_device(d) for d in named] if named else [best_device()]


def selected_cases(config: pytest.Config) -> list[CaseSpec]:
    """The cases of the selection on the chosen devices, cut to the shard if one is given."""
    catalog = load_catalog()
    records = catalog.select(
        config.getoption("category"),
        config.getoption("family"),
        config.getoption("tier"),
        config.getoption("model"),
    )
    devices = config.stash[_STASH_DEVICE].split(",")
    one_head = config.getoption("one_head")
    specs = [
        CaseSpec(r, h.name, d)
        for d in devices
        for r in records
        if r.has_model
        for h in ((r.base_head,) if one_head else r.heads)
    ]
    shard = config.getoption("shard")
    if shard:
        from hfci.matrix import parse_shard, shard_for_device

        index, count = parse_shard(shard)
        keep: set[tuple[str, str]] = set()
        for device in devices:
            cases = [s.case for s in specs if s.device == device]
            keep |= {(c, device) for c in shard_for_device(cases, device, index, count)}
        specs = [s for s in specs if (s.case, s.device) in keep]
    return specs


def known_failure(spec: CaseSpec, check: str) -> str | None:
    """The reason of a models.toml known failure matching this case and check, if any."""
    entry = known_failure_entry(spec, check)
    return entry.get("reason", "known failure") if entry is not None else None


def known_failure_entry(spec: CaseSpec, check: str) -> dict[str, Any] | None:
    """The models.toml known failure matching this case and check, if any."""
    return data.known_failure(
        spec.record.model_type,
        spec.head,
        check,
        spec.device,
        spec.runner,
        load_catalog().transformers_version,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hfci_case" not in metafunc.fixturenames:
        return
    check = metafunc.function.__name__.removeprefix("test_")
    chosen = metafunc.config.getoption("runner") or ["eager"]
    # Parity compares each other runner with eager; every other check runs on eager itself.
    wanted = [r for r in chosen if r != "eager"] if check == "parity" else [r for r in chosen if r == "eager"]
    params = []
    for base in selected_cases(metafunc.config):
        for runner in wanted:
            spec = CaseSpec(base.record, base.head, base.device, runner)
            if check == "generate" and not spec.record.head(spec.head).generative:
                continue
            if check == "device_parity" and spec.device == "cpu":
                continue
            params.append(_param(spec, check))
    metafunc.parametrize("hfci_case", params)


def _param(spec: CaseSpec, check: str) -> Any:
    marks = [
        pytest.mark.model,
        getattr(pytest.mark, marker_name(spec.record.category)),
        getattr(pytest.mark, spec.device),
        getattr(pytest.mark, f"tier_{spec.record.tier}"),
        getattr(pytest.mark, f"family_{marker_name(spec.record.family)}"),
        pytest.mark.xdist_group(f"{spec.case}-{spec.device}"),
    ]
    known = known_failure_entry(spec, check)
    if known is not None:
        # run = false: a failure that costs the whole timeout to show (a compile past 300 s)
        # is reported as expected without paying for it again.
        reason = known.get("reason", "known failure")
        marks.append(pytest.mark.xfail(reason=reason, strict=False, run=known.get("run", True)))
    return pytest.param(spec, id=spec.id, marks=marks)


_CHECK_ORDER = (
    "forward",
    "determinism",
    "save_load",
    "benchmark",
    "generate",
    "pipeline",
    "device_parity",
    "parity",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run = config.getoption("run_model_tests")
    skip = pytest.mark.skip(reason="model test: pass --run-model-tests to run it")
    # A check with no case in this selection (parity without --runner, device parity on CPU) would
    # otherwise show up as an empty-parameter-set skip: leave it out instead.
    empty = [
        item
        for item in items
        if "hfci_case" in getattr(item, "fixturenames", ())
        and not isinstance(
            getattr(item, "callspec", None) and item.callspec.params.get("hfci_case"), CaseSpec
        )
    ]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if item not in empty]
    for item in items:
        spec = getattr(item, "callspec", None) and item.callspec.params.get("hfci_case")
        if isinstance(spec, CaseSpec):
            item.user_properties.append(("hfci", _meta(spec, item)))
            if not run:
                item.add_marker(skip)

    def order(item: pytest.Item) -> tuple[Any, ...]:
        spec = getattr(item, "callspec", None) and item.callspec.params.get("hfci_case")
        if not isinstance(spec, CaseSpec):
            return ("",)
        # All checks of one case together, so a worker builds each tiny model once.
        check = item.originalname.removeprefix("test_")
        return (spec.id, _CHECK_ORDER.index(check) if check in _CHECK_ORDER else len(_CHECK_ORDER))

    items.sort(key=order)


def _meta(spec: CaseSpec, item: pytest.Item) -> dict[str, str]:
    return {
        "case": spec.case,
        "model_type": spec.record.model_type,
        "head": spec.head,
        "device": spec.device,
        "check": item.originalname.removeprefix("test_"),
        "category": spec.record.category,
        "tier": spec.record.tier,
        "runner": spec.runner,
    }


# -- building cases once per worker ------------------------------------------------------------


class _Built:
    """The last case built in this process, with its reference output."""

    key: tuple[str, str] | None = None
    case: Any = None
    error: BaseException | None = None
    reference: Any = None


def built_case(spec: CaseSpec) -> Any:
    from hfci.case import build_case
    from hfci.factory import FactoryError, MissingDependency

    # All runners of a case share one built model (runners copy what they change).
    key = (f"{spec.case}-{spec.device}", "case")
    if _Built.key != key:
        _Built.key, _Built.case, _Built.error, _Built.reference = key, None, None, None
        try:
            _Built.case = build_case(spec.record, spec.head, spec.device)
        except MissingDependency as error:
            _Built.error = error
        except FactoryError as error:
            _Built.error = error
        except Exception as error:
            _Built.error = FactoryError(f"building failed: {type(error).__name__}: {str(error)[:300]}")
    if isinstance(_Built.error, MissingDependency):
        pytest.skip(f"missing optional dependency {_Built.error.package!r}")
    if _Built.error is not None:
        pytest.fail(f"build: {_Built.error}", pytrace=False)
    return _Built.case


def reference_output(spec: CaseSpec) -> Any:
    from hfci.checks import run_forward

    case = built_case(spec)
    if _Built.reference is None:
        _Built.reference = run_forward(case)
    return _Built.reference


def remember_reference(output: Any) -> None:
    _Built.reference = output


# -- results -----------------------------------------------------------------------------------


def _reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.failed:
        # The exception itself: its last lines are often advice (dynamo's "Set TORCHDYNAMO_VERBOSE").
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None and crash.message.strip():
            return crash.message.strip()[:500]
        text = report.longreprtext.strip().splitlines()
        errors = [line for line in text if line.startswith("E ")]
        return (errors[-1][2:].strip() if errors else (text[-1] if text else "failed"))[:500]
    return ""


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xpassed" if report.passed else "xfailed"
    return report.outcome


_STASH_LOCK = pytest.StashKey[Any]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Taken in setup and released in teardown, so that waiting for the machine counts in neither
    # the call's recorded duration nor its timings.
    meta = dict(item.user_properties).get("hfci")
    path = _lock_path(item.config)
    if meta and path:
        from hfci.bench import machine_lock

        lock = machine_lock(path, exclusive=meta["check"] == "benchmark")
        lock.__enter__()
        item.stash[_STASH_LOCK] = lock


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    lock = item.stash.get(_STASH_LOCK, None)
    if lock is not None:
        del item.stash[_STASH_LOCK]
        lock.__exit__(None, None, None)


def _lock_path(config: pytest.Config) -> str | None:
    """One lock file per xdist run, so its workers take turns measuring; none without xdist."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput:
        uid = workerinput["testrunuid"]
    elif getattr(config.option, "dist", "no") != "no" and getattr(config.option, "testrunuid", None):
        uid = config.option.testrunuid
    else:
        return None
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"hfci-machine-{uid}.lock")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    properties = dict(report.user_properties)
    meta = properties.get("hfci")
    if not meta or not _should_record(report):
        return
    records = _records_of(report)
    if records is not None:
        records.append(
            Record(
                **meta,
                outcome=_outcome(report),
                duration=report.duration,
                reason=_reason(report),
                metrics=properties.get("hfci_metrics"),
            )
        )
        _checkpoint(_CONFIG[0])


_STASH_CHECKPOINT = pytest.StashKey[float]()


def _checkpoint(config: pytest.Config) -> None:
    """Rewrite the results files, marked partial, once ``--checkpoint`` seconds have passed.

    A CI job killed at its timeout then still uploads the checks it finished. The write never
    overlaps a measurement: it holds the workers' machine lock shared, and while a worker
    measures it waits for the next check instead.
    """
    if hasattr(config, "workerinput") or not config.getoption("run_model_tests"):
        return
    last = config.stash.get(_STASH_CHECKPOINT, config._hfci_started)  # type: ignore[attr-defined]
    if time.perf_counter() - last < config.getoption("checkpoint"):
        return
    from hfci.bench import machine_idle

    with machine_idle(_lock_path(config)) as idle:
        if idle:
            _write_results(config, config.stash.get(_STASH_RECORDS, []), complete=False)
            config.stash[_STASH_CHECKPOINT] = time.perf_counter()


_META: dict[str, dict[str, Any]] = {}


def _device_meta(device: str) -> dict[str, Any]:
    """A device's fingerprint and environment, worked out once: every checkpoint writes them."""
    if device not in _META:
        from hfci import __version__
        from hfci.devices import describe, fingerprint

        _META[device] = {
            "fingerprint": fingerprint(device),
            "environment": describe(device),
            "hfci": __version__,
        }
    return _META[device]


def _write_results(config: pytest.Config, records: list[Record], complete: bool) -> list[Path]:
    """One results file per device of ``records``; ``complete`` says the run reached its end."""
    directory = Path(config.getoption("results_dir"))
    return [
        write_results(
            directory, device, [r for r in records if r.device == device], _device_meta(device), complete
        )
        for device in sorted({r.device for r in records})
    ]


# -- baselines ---------------------------------------------------------------------------------

_BASELINES: dict[tuple[str, str], tuple[Any, str]] = {}


def baseline_for(config: pytest.Config, device: str) -> tuple[Any, str]:
    """This device's baseline (or None) and the note saying which, loaded once per process."""
    from hfci import baselines
    from hfci.devices import fingerprint

    directory = config.getoption("baselines_dir")
    key = (directory, device)
    if key not in _BASELINES:
        if config.getoption("no_baseline_check"):
            _BASELINES[key] = (None, "baseline check off (--no-baseline-check)")
        else:
            _BASELINES[key] = baselines.find(fingerprint(device), Path(directory))
    return _BASELINES[key]


def baseline_usual_reference(config: pytest.Config, device: str) -> float | None:
    """The usual reference time of this device's baseline (see :func:`hfci.bench.compare_latency`)."""
    from hfci.bench import usual_reference

    key = (config.getoption("baselines_dir"), device)
    if key not in _USUAL:
        baseline, _ = baseline_for(config, device)
        entries = (e.get("perf") for e in (baseline or {}).get("cases", {}).values())
        _USUAL[key] = usual_reference(e for e in entries if e)
    return _USUAL[key]


_USUAL: dict[tuple[str, str], float | None] = {}
_CONFIG: list[pytest.Config] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG[:] = [session.config]
    session.config.stash[_STASH_RECORDS] = []
    session.config.stash[_STASH_SESSION] = session
    session.config._hfci_started = time.perf_counter()  # type: ignore[attr-defined]


_STASH_SESSION = pytest.StashKey[pytest.Session]()


def _records_of(report: pytest.TestReport) -> list[Record] | None:
    return _CONFIG[0].stash.get(_STASH_RECORDS, None) if _CONFIG else None


def _should_record(report: pytest.TestReport) -> bool:
    # The call phase carries the verdict; setup carries skips and build errors.
    if report.when == "call":
        return True
    return report.when == "setup" and not report.passed


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not config.getoption("run_model_tests"):
        return
    records: list[Record] = _with_rechecks(config.stash.get(_STASH_RECORDS, []))
    if not records:
        return
    from hfci import baselines

    terminalreporter.section("hfci model summary")
    devices = sorted({r.device for r in records})
    fresh: list[Record] = []
    notes = []
    for device in devices:
        try:
            baseline, note = baseline_for(config, device)
        except baselines.BaselineError as error:
            baseline, note = None, f"baseline unusable: {error}"
        stale = baselines.stale_perf(baseline)
        if stale:
            from hfci.bench import PROTOCOL

            note += (
                f"; {stale} cases' performance was measured by an older protocol than this hfci's "
                f"({PROTOCOL}) and is not compared: refresh with `nox -s update_baselines`"
            )
        notes.append(f"{device}: {note}")
        fresh += baselines.new_failures(baseline, [r for r in records if r.device == device])
    terminalreporter.write_line(summary(records, new_failures=fresh))
    for line in notes:
        terminalreporter.write_line(line)
    session = config.stash.get(_STASH_SESSION, None)
    stopped = exitstatus == pytest.ExitCode.INTERRUPTED or bool(
        session and (session.shouldstop or session.shouldfail)
    )
    for path in _write_results(config, records, complete=not stopped):
        terminalreporter.write_line(
            f"results: {path}" + (" (partial: the run stopped early)" if stopped else "")
        )
    for device in devices if config.getoption("update_baselines") else ():
        mine = [r for r in records if r.device == device]
        meta = _device_meta(device)
        target = baselines.path_for(meta["fingerprint"], Path(config.getoption("baselines_dir")))
        merged = baselines.merge(baselines.load(target), mine, meta["environment"], meta["fingerprint"])
        terminalreporter.write_line(f"baseline updated: {baselines.write(target, merged)}")
    if fresh:
        config._hfci_new_failures = len(fresh)  # type: ignore[attr-defined]
    latency = [r for r, _ in verdicts(records, "regression") if r.outcome == "passed"]
    if latency and config.getoption("regressions") == "fail" and not config.getoption("update_baselines"):
        config._hfci_regressions = len(latency)  # type: ignore[attr-defined]
        terminalreporter.write_line(
            f"the run fails: {len(latency)} latency regressions survived their re-check "
            "(--regressions report only reports them)"
        )


# -- suspected regressions, re-checked at the session's end ------------------------------------

_SUSPECTS: list[tuple[CaseSpec, float]] = []
_RECHECKS: dict[str, Any] = {}


def defer_recheck(spec: CaseSpec) -> None:
    """Have this process re-measure a suspected latency regression at the end of its session."""
    _SUSPECTS.append((spec, time.monotonic()))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    # An xdist worker hands its re-checks over when it finishes.
    _RECHECKS.update(getattr(node, "workeroutput", {}).get("hfci_rechecks", {}))


def _with_rechecks(records: list[Record]) -> list[Record]:
    """Benchmark records with their final metrics, where a re-check replaced them."""
    import dataclasses

    return [
        dataclasses.replace(r, metrics=_RECHECKS[f"{r.case}|{r.device}"])
        if r.check == "benchmark" and f"{r.case}|{r.device}" in _RECHECKS
        else r
        for r in records
    ]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Any:
    config = session.config
    # Before xdist's own hook sends the worker's output, and before the terminal summary.
    if _SUSPECTS:
        from hfci.suite import recheck

        rechecks = recheck(config, list(_SUSPECTS), _lock_path(config))
        _SUSPECTS.clear()
        if hasattr(config, "workeroutput"):
            config.workeroutput["hfci_rechecks"] = rechecks
        else:
            _RECHECKS.update(rechecks)
    result = yield
    # New failures, and regressions that survived their re-check, fail the run whatever else happened.
    failing = getattr(config, "_hfci_new_failures", 0) or getattr(config, "_hfci_regressions", 0)
    if failing and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result
