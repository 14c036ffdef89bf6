"""The model tests: each check of ``hfci.checks`` as its own test, over every selected case.

Run with ``pytest --pyargs hfci.suite --run-model-tests`` (``hfci run`` does this for you).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hfci import checks
from hfci.plugin import CaseSpec, built_case, reference_output, remember_reference


def _run(check, *args) -> None:
    try:
        check(*args)
    except checks.CheckSkipped as why:
        pytest.skip(str(why))
    except ImportError as error:
        # An optional package only this check needs (diffusers for a TTS scheduler, say).
        pytest.skip(f"missing optional dependency: {str(error).strip().splitlines()[0][:200]}")


def test_forward(hfci_case: CaseSpec) -> None:
    """Runs; outputs finite, with the expected leading shapes."""
    remember_reference(checks.check_forward(built_case(hfci_case)))


def test_determinism(hfci_case: CaseSpec) -> None:
    """Two forwards in eval mode agree."""
    checks.check_determinism(built_case(hfci_case), reference_output(hfci_case))


def test_save_load(hfci_case: CaseSpec) -> None:
    """save_pretrained then from_pretrained (offline, safetensors) gives the same outputs."""
    checks.check_save_load(built_case(hfci_case), reference_output(hfci_case))


def test_benchmark(hfci_case: CaseSpec, request: pytest.FixtureRequest) -> None:
    """Latency, peak memory and throughput, compared with the device's baseline.

    A latency regression that survives the immediate re-measures is a suspect: the plugin
    re-checks it at the end of the session, minutes later for most, and that verdict is final.
    So is a measurement still disturbed after its retakes (see :func:`hfci.bench.measure`).
    A burst of noise on a shared machine lasts seconds to minutes, so the immediate re-measures
    share it; a real slowdown is there in both.
    """
    from hfci import bench
    from hfci.plugin import defer_recheck

    case = built_case(hfci_case)
    config = request.config
    stored, usual = stored_perf(config, hfci_case)
    # A regression must survive immediate re-measures: a noisy burst, or a model whose CPU
    # kernels settle into a slow mode for a while, is not one.
    measurement, latency = measured(case, hfci_case, config, stored, usual, bench.REMEASURES)
    metrics = bench.outcome(stored, measurement, latency, config.getoption("memory_tolerance"))
    if latency is not None and (latency.kind == "regression" or measurement.extra.get("disturbed")):
        # Still disturbed after its retakes, a measurement is no evidence either way.
        defer_recheck(hfci_case)
    request.node.user_properties.append(("hfci_metrics", metrics))
    memory = [v for v in metrics["verdicts"] if v["kind"] == "regression" and v["metric"] == "memory"]
    if memory and not config.getoption("update_baselines") and config.getoption("regressions") == "fail":
        pytest.fail("performance regression: memory " + memory[0]["detail"], pytrace=False)


def measured(
    case: Any,
    spec: CaseSpec,
    config: pytest.Config,
    stored: dict[str, Any] | None,
    usual: float | None,
    remeasures: int,
) -> tuple[Any, Any]:
    """A case's measurement and its latency verdict against ``stored`` (None without one),
    re-measured up to ``remeasures`` times while the verdict is a regression."""
    from hfci import bench

    tolerance = config.getoption("baseline_tolerance")
    for _ in range(remeasures + 1):
        measurement = bench.measure(_forward_of(case), spec.device, _batch_of(case), spec.case)
        if not stored:
            return measurement, None
        latency = bench.compare_latency(stored, measurement, tolerance, usual=usual)
        if latency.kind != "regression":
            break
    return measurement, latency


def _forward_of(case: Any) -> Any:
    return lambda: case.model(**case.inputs)


def _batch_of(case: Any) -> int:
    return next(iter(case.inputs.values())).shape[0]


def stored_perf(config: pytest.Config, spec: CaseSpec) -> tuple[dict[str, Any] | None, float | None]:
    """The baseline's measurement of a case (None if none comparable) and the baseline's usual reference."""
    from hfci import bench
    from hfci.plugin import baseline_for, baseline_usual_reference

    baseline, _ = baseline_for(config, spec.device)
    stored = ((baseline or {}).get("cases", {}).get(spec.case) or {}).get("perf")
    # Measured by another protocol: not compared, and rewritten by a refresh.
    return (stored if bench.comparable(stored) else None), baseline_usual_reference(config, spec.device)


def recheck(
    config: pytest.Config, suspects: list[tuple[CaseSpec, float]], lock: str | None
) -> dict[str, Any]:
    """The final benchmark metrics of each suspect (a latency regression, or a measurement taken
    on a busy machine), re-measured at least ``--recheck-after`` seconds after it was found,
    keyed ``case|device``."""
    from hfci import bench
    from hfci.case import build_case

    wait = config.getoption("recheck_after") - (time.monotonic() - max(t for _, t in suspects))
    if wait > 0:
        time.sleep(wait)
    final: dict[str, Any] = {}
    with bench.machine_lock(lock, exclusive=True):
        for spec, found_at in suspects:
            stored, usual = stored_perf(config, spec)
            try:
                case = build_case(spec.record, spec.head, spec.device)
            except Exception:
                continue  # it was built before; without it, the suspect's own verdict stands
            # The whole procedure again: one noisy take must not confirm what one noisy take found.
            measurement, latency = measured(case, spec, config, stored, usual, bench.REMEASURES)
            metrics = bench.outcome(stored, measurement, latency, config.getoption("memory_tolerance"))
            later = round(time.monotonic() - found_at)
            for verdict in metrics["verdicts"]:
                if verdict["kind"] == "regression" and verdict["metric"] == "latency":
                    verdict["detail"] += f"; confirmed {later} s later"
            final[f"{spec.case}|{spec.device}"] = {**metrics, "rechecked_after": later}
    return final


def test_generate(hfci_case: CaseSpec) -> None:
    """Generative heads produce greedy tokens of the right shape."""
    _run(checks.check_generate, built_case(hfci_case))


def test_pipeline(hfci_case: CaseSpec) -> None:
    """The head's pipeline task runs with processors built offline."""
    _run(checks.check_pipeline, built_case(hfci_case))


def test_parity(hfci_case: CaseSpec) -> None:
    """A non-eager runner (--runner) agrees with the eager reference."""
    _run(checks.check_parity, built_case(hfci_case), hfci_case.runner)


def test_device_parity(hfci_case: CaseSpec) -> None:
    """On a non-CPU device, outputs agree with the same seeded model on the CPU."""
    from hfci.case import build_case

    cpu = build_case(hfci_case.record, hfci_case.head, "cpu")
    _run(checks.check_device_parity, built_case(hfci_case), cpu)
