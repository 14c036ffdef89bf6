"""The one session object of a pytest process: everything hfci's hooks and tests share.

:func:`hfci.pytest.plugin.pytest_configure` registers one :class:`HfciSession` with the plugin
manager (and in the config's stash, where the tests' ``hfci_session`` fixture finds it). Its
methods are hooks; its attributes are the state that module globals held before: the case built
last, the baselines and device facts read once, the records of the run, the suspected
regressions waiting for their re-check.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hfci import __version__, baselines, bench
from hfci.case import TinyCase
from hfci.catalog import entries_note, load_catalog
from hfci.devices import describe, fingerprint
from hfci.factory import FactoryError, MissingDependency
from hfci.impact import KEY as SOURCES_KEY
from hfci.impact import SourceTree
from hfci.outputs import seeded_forward
from hfci.pytest.cases import (
    CaseSpec,
    build_spec,
    case_meta,
    case_of,
    case_params,
    check_of,
    fails_as_expected,
    group_of,
    item_meta,
    known_failure_entry,
    param_index,
    raised,
    run_order,
    selected_cases,
    spec_of_node_id,
    transformers_path,
)
from hfci.pytest.isolation import CaseScheduling, crash_reason, release_memory, rss_bytes
from hfci.pytest.measuring import measured
from hfci.results import Outcome, Record, summary, verdicts, write_results
from hfci.selection import Selection

__all__ = ["SESSION", "HfciSession"]


@dataclasses.dataclass
class _Built:
    """The last case built in this process, with its reference output."""

    key: str | None = None
    case: TinyCase | None = None
    error: BaseException | None = None
    reference: Any = None


def _transformers_line(report: pytest.TestReport) -> str:
    """``transformers/models/x/modeling_x.py:123``: the innermost frame inside transformers.

    The line a failure reached in transformers tells an upgrade's diff whose change it is;
    the exception chain is searched from the exception raised last.
    """
    for element in reversed(getattr(report.longrepr, "chain", None) or ()):
        for entry in reversed(getattr(element[0], "reprentries", ())):
            location = getattr(entry, "reprfileloc", None)
            path = transformers_path(getattr(location, "path", ""))
            if path:
                return f"{path}:{location.lineno}"
    return ""


def _reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.failed:
        # The exception itself: its last lines are often advice (dynamo's "Set TORCHDYNAMO_VERBOSE").
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None and crash.message.strip():
            message = crash.message.strip()[:500]
        else:
            text = report.longreprtext.strip().splitlines()
            errors = [line for line in text if line.startswith("E ")]
            message = (errors[-1][2:].strip() if errors else (text[-1] if text else "failed"))[:500]
        where = _transformers_line(report)
        return f"{message} (at {where})" if where else message
    return ""


def _outcome(report: pytest.TestReport) -> Outcome:
    if hasattr(report, "wasxfail"):
        return Outcome.XPASSED if report.passed else Outcome.XFAILED
    if dict(report.user_properties).get("hfci_crashed"):
        return Outcome.CRASHED
    return Outcome(report.outcome)


def _should_record(report: pytest.TestReport) -> bool:
    # The call phase carries the verdict; setup carries skips and build errors.
    if report.when == "call":
        return True
    return report.when == "setup" and not report.passed


class HfciSession:
    """The state of one pytest process running (or collecting) hfci's model tests."""

    def __init__(self, config: pytest.Config, selection: Selection, devices: list[str]) -> None:
        self.config = config
        self.selection = selection
        self.devices = devices
        self.records: list[Record] = []
        self.started = time.perf_counter()
        self._last_partial: float | None = None
        self._session: pytest.Session | None = None
        self._built = _Built()
        self._memory_mark = rss_bytes()
        self._locks: dict[str, Any] = {}
        self._stopped: bench.StoppedTime | None = None
        self._baselines: dict[str, tuple[baselines.Baseline | None, str]] = {}
        self._usual: dict[str, float | None] = {}
        self._device_meta: dict[str, dict[str, Any]] = {}
        self._suspects: list[tuple[CaseSpec, float]] = []
        self._rechecks: dict[str, Any] = {}
        self._failing = 0
        self._nodes: list[Any] = []
        self._interrupted = False
        self._cases: list[CaseSpec] | None = None
        self._index: dict[str, CaseSpec] | None = None
        self._tree: SourceTree | None = None

    @property
    def _controller(self) -> bool:
        """The process that writes results: the xdist controller, or the only process."""
        return not hasattr(self.config, "workerinput") and bool(self.config.getoption("run_model_tests"))

    # -- collection --------------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session
        self.started = time.perf_counter()
        if hasattr(self.config, "workerinput") and self.config.getoption("run_model_tests"):
            # What every model's build imports (1.7 s of the 2.4 s a process's first build takes):
            # paid here, once per worker, it is not charged to whichever case comes first, whose
            # recorded duration a shard plan would then carry to another job.
            importlib.import_module("transformers.modeling_utils")

    def cases(self) -> list[CaseSpec]:
        """The selected cases on this run's devices, worked out once."""
        if self._cases is None:
            self._cases = selected_cases(self.selection, self.devices, load_catalog())
        return self._cases

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "hfci_case" not in metafunc.fixturenames:
            return
        check = metafunc.function.__name__.removeprefix("test_")
        metafunc.parametrize("hfci_case", case_params(check, self.cases(), self.selection.runner))

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        # A check with no case in this selection (parity without --runner, device parity on CPU)
        # would otherwise show up as an empty-parameter-set skip: leave it out instead.
        empty = [i for i in items if "hfci_case" in getattr(i, "fixturenames", ()) and case_of(i) is None]
        if config.getoption("no_benchmark"):
            # Correctness only: the landing gate must not pay for measurements it compares with nothing.
            empty += [i for i in items if case_of(i) is not None and check_of(i) == "benchmark"]
        if empty:
            config.hook.pytest_deselected(items=empty)
            items[:] = [item for item in items if item not in empty]
        skip = pytest.mark.skip(reason="model test: pass --run-model-tests to run it")
        for item in items:
            spec = case_of(item)
            if spec is not None:
                item.user_properties.append(("hfci", item_meta(spec, item)))
                if not config.getoption("run_model_tests"):
                    item.add_marker(skip)
        items.sort(key=run_order)

    # -- taking turns on the machine -----------------------------------------------------------

    def lock_path(self) -> str | None:
        """One lock file per xdist run, so its workers take turns measuring; none without xdist."""
        workerinput = getattr(self.config, "workerinput", None)
        if workerinput:
            uid = workerinput["testrunuid"]
        elif getattr(self.config.option, "dist", "no") != "no" and getattr(
            self.config.option, "testrunuid", None
        ):
            uid = self.config.option.testrunuid
        else:
            return None
        return os.path.join(tempfile.gettempdir(), f"hfci-machine-{uid}.lock")

    def _stopped_time(self) -> bench.StoppedTime:
        if self._stopped is None:  # the lock path is the run's, fixed once configured
            path = self.lock_path()
            self._stopped = bench.StoppedTime(path and bench.stopped_log(path))
        return self._stopped

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # Taken in setup and released in teardown, so that waiting for the machine counts in
        # neither the call's recorded duration nor its timings. A measurement stops the other
        # workers while it runs; every other check runs on every core, and takes the machine
        # shared only where workers cannot be stopped.
        meta = dict(item.user_properties).get("hfci")
        path = self.lock_path()
        if not (meta and path):
            return
        if meta["check"] == "benchmark":
            lock = bench.machine_to_itself(path)
        elif not bench.can_freeze():
            lock = bench.machine_lock(path, exclusive=False)
        else:
            return
        lock.__enter__()
        self._locks[item.nodeid] = lock

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        lock = self._locks.pop(item.nodeid, None)
        if lock is not None:
            lock.__exit__(None, None, None)

    # -- known failures that say what they expect ------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        spec = case_of(item)
        if spec is not None and call.when == "call":
            # Time stopped while another worker measured is not this check's.
            report.duration = max(0.0, report.duration - self._stopped_time().within(call.start, call.stop))
        error = call.excinfo.value if call.excinfo is not None else None
        if spec is not None and hasattr(report, "wasxfail") and error is not None:
            entry = known_failure_entry(spec, check_of(item)) or {}
            if not isinstance(error, pytest.xfail.Exception) and not fails_as_expected(entry, error):
                # It failed, but not as its entry says it does: that is a failure of its own.
                del report.wasxfail
                report.outcome = "failed"
            else:
                report.user_properties.append(("hfci_raised", raised(error)))
        return report

    # -- crashes: the xdist controller's side ----------------------------------------------------

    def _param_index(self) -> dict[str, CaseSpec]:
        if self._index is None:
            self._index = param_index(self.cases(), self.selection.runner)
        return self._index

    def _scope_of(self, node_id: str) -> str | None:
        found = spec_of_node_id(node_id, self._param_index())
        return group_of(found[0]) if found else None

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        return CaseScheduling(config, log, self._scope_of)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodeready(self, node: Any) -> None:
        self._nodes.append(node)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """A worker died in a model test: record the check as crashed, and its case's rest as not run."""
        found = spec_of_node_id(crashitem, self._param_index())
        if found is None:
            return
        spec, check = found
        why = crash_reason(getattr(report, "node", None), self.config.option.testrunuid)
        report.when = "call"
        report.user_properties = [("hfci", case_meta(spec, check)), ("hfci_crashed", why)]
        report.longrepr = f"crashed in {check}: {why}"
        entry = known_failure_entry(spec, check)
        if entry is not None and entry.get("expect") == "crash":
            report.outcome = "skipped"
            report.wasxfail = entry.get("reason", "known failure")
        for node_id in getattr(sched, "dropped", {}).pop(crashitem, []):
            self._report_not_run(node_id, f"not run: its case crashed in {check} ({why})")

    def _report_not_run(self, node_id: str, reason: str) -> None:
        found = spec_of_node_id(node_id, self._param_index())
        if found is None:
            return
        path = node_id.split("::")[0]
        report = pytest.TestReport(
            nodeid=node_id,
            location=(path, None, node_id),
            keywords={},
            outcome="skipped",
            longrepr=(path, None, f"Skipped: {reason}"),
            when="call",
            user_properties=[("hfci", case_meta(*found))],
        )
        self.config.hook.pytest_runtest_logreport(report=report)

    def terminate(self, signum: int, frame: Any) -> None:
        """SIGTERM (a CI job's timeout, ``hfci run`` stopped) ends the run as Ctrl-C does: the
        results are written, marked partial. Once: a second signal must not cut that write short."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not self._interrupted:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self._interrupted = True
        # A worker deep in a kernel (a compile) answers no shutdown, and xdist would wait 10 s for
        # each; what it was doing has no result either way.
        for node in self._nodes:
            io = getattr(getattr(node, "gateway", None), "_io", None)
            if io is not None and hasattr(io, "kill"):
                io.kill()

    # -- recording -------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        meta = properties.get("hfci")
        if not meta or not _should_record(report):
            return
        self.records.append(
            Record(
                **meta,
                outcome=_outcome(report),
                duration=report.duration,
                reason=_reason(report),
                metrics=properties.get("hfci_metrics"),
                raised=properties.get("hfci_raised"),
            )
        )
        self._write_partial()

    def _write_partial(self) -> None:
        """Rewrite the results files, marked partial, once ``--results-every`` seconds have passed.

        A CI job killed at its timeout then still uploads the checks it finished. The write never
        overlaps a measurement: it holds the workers' machine lock shared, and while a worker
        measures it waits for the next check instead.
        """
        if not self._controller:
            return
        last = self.started if self._last_partial is None else self._last_partial
        if time.perf_counter() - last < self.config.getoption("results_every"):
            return
        with bench.machine_idle(self.lock_path()) as idle:
            if idle:
                self._write_results(self.records, complete=False)
                self._last_partial = time.perf_counter()

    def device_meta(self, device: str) -> dict[str, Any]:
        """A device's fingerprint and environment, worked out once: every partial write writes them."""
        if device not in self._device_meta:
            self._device_meta[device] = {
                "fingerprint": fingerprint(device),
                "environment": describe(device),
                "hfci": __version__,
            }
        return self._device_meta[device]

    def sources(self, records: list[Record]) -> dict[str, Any]:
        """The transformers sources of the model types ``records`` ran (:mod:`hfci.impact`), what
        a later ``--changed-since`` compares with. Each file is read once per run."""
        if self._tree is None:
            self._tree = SourceTree()
        catalog = load_catalog()
        types = sorted({r.model_type for r in records} & set(catalog.records))
        return self._tree.record(catalog[t] for t in types)

    def _write_results(self, records: list[Record], complete: bool) -> list[Path]:
        """One results file per device of ``records``; ``complete`` says the run reached its end."""
        directory = Path(self.config.getoption("results_dir"))
        paths = []
        for device in sorted({r.device for r in records}):
            mine = [r for r in records if r.device == device]
            meta = {**self.device_meta(device), SOURCES_KEY: self.sources(mine)}
            paths.append(write_results(directory, device, mine, meta, complete))
        return paths

    # -- what the tests ask for ------------------------------------------------------------------

    def built_case(self, spec: CaseSpec) -> TinyCase:
        """The case's model and inputs, built once per process for all its checks and runners.

        A missing optional package skips the check; any other build error fails it.
        """
        key = f"{spec.case}-{spec.device}"
        built = self._built
        if built.key != key:
            # The last case's model, inputs and reference go before the next one is built.
            self._built = _Built()
            self._memory_mark = release_memory(self._memory_mark)
            self._built = built = _Built(key)
            try:
                built.case = build_spec(spec)
            except FactoryError as error:
                built.error = error
            except Exception as error:
                built.error = FactoryError(f"building failed: {type(error).__name__}: {str(error)[:300]}")
                built.error.__cause__ = error
        if isinstance(built.error, MissingDependency):
            pytest.skip(f"missing optional dependency {built.error.package!r}")
        if built.error is not None:
            # Chained, so a known failure's ``raises`` matches what the build raised.
            raise pytest.fail.Exception(f"build: {built.error}", pytrace=False) from built.error
        assert built.case is not None
        return built.case

    def reference_output(self, spec: CaseSpec) -> Any:
        """The case's seeded eager output: the forward check's, or one taken now."""
        case = self.built_case(spec)
        if self._built.reference is None:
            self._built.reference = seeded_forward(case.model, case.inputs)
        return self._built.reference

    def remember_reference(self, output: Any) -> None:
        """Keep the forward check's output as the reference the later checks compare with."""
        self._built.reference = output

    def baseline_for(self, device: str) -> tuple[baselines.Baseline | None, str]:
        """This device's baseline (or None) and the note saying which, loaded once per process."""
        if device not in self._baselines:
            if self.config.getoption("no_baseline_check"):
                self._baselines[device] = (None, "baseline check off (--no-baseline-check)")
            else:
                directory = Path(self.config.getoption("baselines_dir"))
                self._baselines[device] = baselines.find(fingerprint(device), directory)
        return self._baselines[device]

    def usual_reference(self, device: str) -> float | None:
        """The usual reference time of this device's baseline (see :func:`hfci.bench.compare_latency`)."""
        if device not in self._usual:
            baseline, _ = self.baseline_for(device)
            self._usual[device] = bench.usual_reference(baseline.perfs() if baseline else ())
        return self._usual[device]

    def stored_perf(self, spec: CaseSpec) -> tuple[dict[str, Any] | None, float | None]:
        """The baseline's measurement of a case (None if none comparable) and the baseline's usual reference."""
        baseline, _ = self.baseline_for(spec.device)
        stored = baseline.perf(spec.case) if baseline else None
        # Measured by another protocol: not compared, and rewritten by a refresh.
        return (stored if bench.comparable(stored) else None), self.usual_reference(spec.device)

    def defer_recheck(self, spec: CaseSpec) -> None:
        """Have this process re-measure a suspected latency regression at the end of its session."""
        self._suspects.append((spec, time.monotonic()))

    # -- the end of the session ------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        # An xdist worker hands its re-checks over when it finishes.
        self._rechecks.update(getattr(node, "workeroutput", {}).get("hfci_rechecks", {}))
        if error is not None:
            # A worker that died measuring left the others stopped (bench.machine_to_itself).
            bench.thaw(bench.descendants(os.getpid()))

    def _recheck(self) -> dict[str, Any]:
        """The final benchmark metrics of each suspect (a latency regression, or a measurement
        taken on a busy machine), re-measured at least ``--recheck-after`` seconds after it was
        found, keyed ``case|device``."""
        config = self.config
        wait = config.getoption("recheck_after") - (time.monotonic() - max(t for _, t in self._suspects))
        if wait > 0:
            time.sleep(wait)
        final: dict[str, Any] = {}
        with bench.machine_to_itself(self.lock_path()):
            for spec, found_at in self._suspects:
                stored, usual = self.stored_perf(spec)
                try:
                    case = build_spec(spec)
                except Exception:
                    continue  # it was built before; without it, the suspect's own verdict stands
                # The whole procedure again: one noisy take must not confirm what one noisy take found.
                measurement, latency = measured(
                    case, spec.case, stored, usual, config.getoption("baseline_tolerance")
                )
                metrics = bench.outcome(stored, measurement, latency, config.getoption("memory_tolerance"))
                later = round(time.monotonic() - found_at)
                for verdict in metrics["verdicts"]:
                    if verdict["kind"] == "regression" and verdict["metric"] == "latency":
                        verdict["detail"] += f"; confirmed {later} s later"
                final[f"{spec.case}|{spec.device}"] = {**metrics, "rechecked_after": later}
        return final

    def _with_rechecks(self, records: list[Record]) -> list[Record]:
        """Benchmark records with their final metrics, where a re-check replaced them."""
        return [
            dataclasses.replace(r, metrics=self._rechecks[f"{r.case}|{r.device}"])
            if r.check == "benchmark" and f"{r.case}|{r.device}" in self._rechecks
            else r
            for r in records
        ]

    def _baseline_notes(self, records: list[Record]) -> Iterator[tuple[str, list[Record], list[Record]]]:
        """Per device: the note on which baseline was compared, the run's new failures and the
        coverage it lost."""
        for device in sorted({r.device for r in records}):
            try:
                baseline, note = self.baseline_for(device)
            except baselines.BaselineError as error:
                baseline, note = None, f"baseline unusable: {error}"
            stale = baselines.stale_perf(baseline)
            if stale:
                note += (
                    f"; {stale} cases' performance was measured by an older protocol than this hfci's "
                    f"({bench.PROTOCOL}) and is not compared: refresh with `nox -s update_baselines`"
                )
            mine = [r for r in records if r.device == device]
            yield (
                f"{device}: {note}",
                baselines.new_failures(baseline, mine),
                baselines.lost_coverage(baseline, mine),
            )

    def _update_baselines(self, records: list[Record], complete: bool) -> Iterator[Path]:
        """Fold this run's records into each device's baseline file, or, with ``--baseline-delta``,
        write what it measured as a delta beside the untouched baseline.

        A delta holds only this run's cases: a shard job that rewrote the whole file would carry
        stale copies of every other shard's cases into the merge.
        """
        deltas = self.config.getoption("baseline_delta")
        for device in sorted({r.device for r in records}):
            mine = [r for r in records if r.device == device]
            meta = self.device_meta(device)
            target = baselines.path_for(meta["fingerprint"], Path(self.config.getoption("baselines_dir")))
            if deltas:
                yield baselines.write_delta(
                    Path(deltas),
                    target,
                    mine,
                    meta["environment"],
                    meta["fingerprint"],
                    shard=self.selection.shard,
                    complete=complete,
                    sources=self.sources(mine),
                )
                continue
            merged = baselines.merge(
                baselines.load(target), mine, meta["environment"], meta["fingerprint"], self.sources(mine)
            )
            yield baselines.write(target, merged)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if not self._controller:
            return
        records = self._with_rechecks(self.records)
        if not records:
            return
        terminalreporter.section("hfci model summary")
        notes, fresh, lost = [], [], []
        for note, new, gone in self._baseline_notes(records):
            notes.append(note)
            fresh += new
            lost += gone
        terminalreporter.write_line(summary(records, new_failures=fresh, lost_coverage=lost))
        for line in notes:
            terminalreporter.write_line(line)
        catalog = load_catalog()
        if catalog.unmatched_entries:
            # The run's own model types first: an entry out of range there leaves its check failing.
            terminalreporter.write_line(entries_note(catalog))
            ran = {r.model_type for r in records}
            for model_type, why in catalog.unmatched_entries:
                if model_type in ran:
                    terminalreporter.write_line(f"  {model_type}: {why}")
        impact = self.selection.impact(catalog)
        if impact is not None:
            terminalreporter.write_line(impact.describe())
        session = self._session
        stopped = exitstatus == pytest.ExitCode.INTERRUPTED or bool(
            session and (session.shouldstop or session.shouldfail)
        )
        for path in self._write_results(records, complete=not stopped):
            terminalreporter.write_line(
                f"results: {path}" + (" (partial: the run stopped early)" if stopped else "")
            )
        if config.getoption("update_baselines"):
            delta = bool(config.getoption("baseline_delta"))
            done = "baseline delta written" if delta else "baseline updated"
            partial = " (partial: a merge skips it)" if stopped and delta else ""
            for path in self._update_baselines(records, complete=not stopped):
                terminalreporter.write_line(f"{done}: {path}{partial}")
        self._failing += len(fresh)
        latency = [r for r, _ in verdicts(records, "regression") if r.outcome == Outcome.PASSED]
        if latency and config.getoption("regressions") == "fail" and not config.getoption("update_baselines"):
            self._failing += len(latency)
            terminalreporter.write_line(
                f"the run fails: {len(latency)} latency regressions survived their re-check "
                "(--regressions report only reports them)"
            )

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Any:
        # Before xdist's own hook sends the worker's output, and before the terminal summary.
        if self._suspects:
            rechecks = self._recheck()
            self._suspects.clear()
            if hasattr(self.config, "workeroutput"):
                self.config.workeroutput["hfci_rechecks"] = rechecks
            else:
                self._rechecks.update(rechecks)
        result = yield
        # New failures, and regressions that survived their re-check, fail the run whatever else happened.
        if self._failing and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return result


SESSION = pytest.StashKey[HfciSession]()
