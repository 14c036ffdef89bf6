"""Report: model coverage from results or baselines (placeholder until the report lands)."""

from __future__ import annotations

from typing import Any


def add_command(sub: Any) -> None:
    """Register ``hfci report``."""
