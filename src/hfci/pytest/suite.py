"""The model tests: each check of ``hfci.checks`` as its own test, over every selected case.

Run with ``pytest --pyargs hfci.pytest.suite --run-model-tests`` (``hfci run`` does this for you).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hfci import bench, checks
from hfci.configs import features
from hfci.factory import absent_package
from hfci.inputs import SEQ_LEN
from hfci.pytest.cases import CaseSpec, build_spec
from hfci.pytest.measuring import measured
from hfci.pytest.session import HfciSession


def _run(check, *args) -> Any:
    try:
        return check(*args)
    except checks.CheckSkipped as why:
        pytest.skip(str(why))
    except ImportError as error:
        # An optional package only this check needs (diffusers for a TTS scheduler, say), when
        # it is really absent; any other ImportError is a failure.
        package = absent_package(error)
        if package is None:
            raise
        pytest.skip(f"missing optional dependency {package!r}: {str(error).strip().splitlines()[0][:200]}")


def test_forward(hfci_case: CaseSpec, hfci_session: HfciSession, request: pytest.FixtureRequest) -> None:
    """Runs; outputs finite, with the expected leading shapes."""
    case = hfci_session.built_case(hfci_case)
    # What "passed" covered: the paths of real models this case's config takes.
    ids = case.inputs.get("input_ids")
    length = ids.shape[-1] if ids is not None else SEQ_LEN
    request.node.user_properties.append(("hfci_metrics", {"features": features(case.model.config, length)}))
    hfci_session.remember_reference(checks.check_forward(case))


def test_determinism(hfci_case: CaseSpec, hfci_session: HfciSession) -> None:
    """Two forwards in eval mode agree."""
    case = hfci_session.built_case(hfci_case)
    checks.check_determinism(case, hfci_session.reference_output(hfci_case))


def test_save_load(hfci_case: CaseSpec, hfci_session: HfciSession) -> None:
    """save_pretrained then from_pretrained (offline, safetensors) gives the same outputs."""
    case = hfci_session.built_case(hfci_case)
    checks.check_save_load(case, hfci_session.reference_output(hfci_case))


def test_benchmark(hfci_case: CaseSpec, hfci_session: HfciSession, request: pytest.FixtureRequest) -> None:
    """Latency, peak memory and throughput, compared with the device's baseline.

    A latency regression that survives the immediate re-measures is a suspect: the session
    re-checks it at its end, minutes later for most, and that verdict is final. So is a
    measurement still disturbed after its retakes (see :func:`hfci.bench.measure`). A burst of
    noise on a shared machine lasts seconds to minutes, so the immediate re-measures share it; a
    real slowdown is there in both.
    """
    case = hfci_session.built_case(hfci_case)
    config = request.config
    stored, usual = hfci_session.stored_perf(hfci_case)
    start = time.time()
    measurement, latency = measured(
        case, hfci_case.case, stored, usual, config.getoption("baseline_tolerance")
    )
    metrics = bench.outcome(stored, measurement, latency, config.getoption("memory_tolerance"))
    # When the machine was the measurement's alone: the suite's benchmark (ci/bench_suite.py)
    # reads the CPU use of the rest of the run from it.
    metrics["window"] = [round(start, 3), round(time.time(), 3)]
    if latency is not None and (latency.kind == "regression" or measurement.extra.get("disturbed")):
        # Still disturbed after its retakes, a measurement is no evidence either way.
        hfci_session.defer_recheck(hfci_case)
    request.node.user_properties.append(("hfci_metrics", metrics))
    memory = [v for v in metrics["verdicts"] if v["kind"] == "regression" and v["metric"] == "memory"]
    if memory and not config.getoption("update_baselines") and config.getoption("regressions") == "fail":
        pytest.fail("performance regression: memory " + memory[0]["detail"], pytrace=False)


def test_generate(hfci_case: CaseSpec, hfci_session: HfciSession) -> None:
    """Generative heads produce greedy tokens of the right shape."""
    _run(checks.check_generate, hfci_session.built_case(hfci_case))


def test_padding(hfci_case: CaseSpec, hfci_session: HfciSession) -> None:
    """Each row of a padded batch equals that row alone: masks honoured, rows kept apart."""
    _run(checks.check_padding, hfci_session.built_case(hfci_case))


def test_cache(hfci_case: CaseSpec, hfci_session: HfciSession) -> None:
    """Decoding with the cache gives the tokens and logits of decoding without it."""
    _run(checks.check_cache, hfci_session.built_case(hfci_case))


def test_training(hfci_case: CaseSpec, hfci_session: HfciSession, request: pytest.FixtureRequest) -> None:
    """Where the head takes labels: finite loss and gradients, and one step lowers the loss."""
    measured_step = _run(checks.check_training, hfci_session.built_case(hfci_case))
    request.node.user_properties.append(("hfci_metrics", {"training": measured_step}))


def test_pipeline(hfci_case: CaseSpec, hfci_session: HfciSession, request: pytest.FixtureRequest) -> None:
    """The head's pipeline task runs with processors built offline (a checkpoint's: its own)."""
    facts = _run(checks.check_pipeline, hfci_session.built_case(hfci_case))
    if hfci_case.checkpoint is not None and facts:
        # Which processors served it, so a results file shows the checkpoint's own were used.
        request.node.user_properties.append(("hfci_metrics", {"pipeline": facts}))


def test_parity(hfci_case: CaseSpec, hfci_session: HfciSession) -> None:
    """A non-eager runner (--runner) agrees with the eager reference."""
    _run(checks.check_parity, hfci_session.built_case(hfci_case), hfci_case.runner)


def test_device_parity(hfci_case: CaseSpec, hfci_session: HfciSession) -> None:
    """On a non-CPU device, outputs agree with the same seeded model on the CPU."""
    cpu = build_spec(hfci_case, "cpu")
    _run(checks.check_device_parity, hfci_session.built_case(hfci_case), cpu)
