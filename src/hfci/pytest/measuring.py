"""The benchmark's measure-and-compare step, shared by the check and its end-of-session re-check."""

from __future__ import annotations

from typing import Any

from hfci import bench
from hfci.case import TinyCase

__all__ = ["measured"]


def _forward_of(case: TinyCase) -> Any:
    return lambda: case.model(**case.inputs)


def _batch_of(case: TinyCase) -> int:
    return next(iter(case.inputs.values())).shape[0]


def measured(
    case: TinyCase,
    case_id: str,
    stored: dict[str, Any] | None,
    usual: float | None,
    tolerance: float,
    remeasures: int = bench.REMEASURES,
) -> tuple[bench.Measurement, bench.Verdict | None]:
    """A case's measurement and its latency verdict against ``stored`` (None without one).

    A suspected regression (or a stored measurement that looks taken on a busy machine) is
    re-measured ``remeasures`` times at once and judged again on all the takes' samples together: a noisy burst in one take is outvoted by the others, where
    asking each take to show the regression again lost a real one whenever any of them fell
    short (a 1.5x slowdown was confirmed in 67 % of the cases when the immediate re-measures and
    the re-check, eight takes, each had to show it).
    """
    expected = ((stored or {}).get("reference") or {}).get("median")

    def take() -> bench.Measurement:
        return bench.measure(
            _forward_of(case), case.device, _batch_of(case), case_id, expected_reference=expected
        )

    measurement = take()
    if not stored:
        return measurement, None
    latency = bench.compare_latency(stored, measurement, tolerance, usual=usual)
    # A stored measurement judged busy by one take's reference is judged again the same way:
    # one take's drift is noisy enough to set aside 4 % of a catalog's entries, twice as many
    # of those a run measured twice (the suspects it re-checks).
    if latency.kind in ("regression", "disturbed") and remeasures:
        measurement = bench.pooled([measurement, *(take() for _ in range(remeasures))])
        latency = bench.compare_latency(stored, measurement, tolerance, usual=usual)
    return measurement, latency
