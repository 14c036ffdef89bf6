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
    """A case's measurement and its latency verdict against ``stored`` (None without one),
    re-measured up to ``remeasures`` times while the verdict is a regression.

    A regression must survive immediate re-measures: a noisy burst, or a model whose CPU kernels
    settle into a slow mode for a while, is not one.
    """
    for _ in range(remeasures + 1):
        expected = ((stored or {}).get("reference") or {}).get("median")
        measurement = bench.measure(
            _forward_of(case), case.device, _batch_of(case), case_id, expected_reference=expected
        )
        if not stored:
            return measurement, None
        latency = bench.compare_latency(stored, measurement, tolerance, usual=usual)
        if latency.kind != "regression":
            break
    return measurement, latency
