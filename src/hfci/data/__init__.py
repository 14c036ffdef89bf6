"""Per-model knowledge that introspection cannot derive, kept as TOML data files."""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["load", "tomllib"]


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed contents of ``src/hfci/data/<name>.toml``."""
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)
