"""The case: a tiny model of one (model type, head) on one device, with its synthetic inputs.

Built here in one place, so every check and runner sees the same model on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfci.catalog import ModelRecord
from hfci.factory import build_model
from hfci.inputs import synthetic_inputs
from hfci.outputs import SEED

__all__ = ["TinyCase", "build_case", "parameter_count"]


def parameter_count(model: Any) -> int:
    """How many numbers the model's parameters hold."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class TinyCase:
    """A built case: the model, its inputs, and what it was built from."""

    record: ModelRecord
    head: str
    device: str
    model: Any
    inputs: dict[str, Any]

    @property
    def parameters(self) -> int:
        return parameter_count(self.model)


def build_case(record: ModelRecord, head: str, device: str = "cpu", seed: int = SEED) -> TinyCase:
    """Model and inputs for one (model type, head) on one device."""
    model = build_model(record, head, device, seed)
    return TinyCase(record, head, device, model, synthetic_inputs(model, record, head, seed))
