"""Per-model knowledge that introspection cannot derive, kept as TOML data files.

``models.toml`` has one table per model type (a project's ``[tool.hfci.models]`` adds its own,
see :func:`model_entry`); :func:`known_failure` is the one reading of their
``known_failures`` entries, used alike by the pytest plugin (to mark the expected failure) and by
the report (to name its reason), so the two cannot disagree about which entry covers a check.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from typing import Any

from hfci.project import tool_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["entry_model_types", "in_range", "known_failure", "load", "model_entry", "tomllib"]


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed contents of ``src/hfci/data/<name>.toml``."""
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def model_entry(model_type: str) -> dict[str, Any]:
    """The ``models.toml`` table of a model type, with the project's own entry laid over it.

    ``[tool.hfci.models.<model type>]`` in the user's pyproject.toml: its config and input keys
    win, its ``skip`` replaces hfci's, and its known failures are matched before hfci's.
    """
    ours = load("models").get(model_type, {})
    theirs = tool_table("models").get(model_type)
    if not theirs:
        return ours
    merged = {**ours, **{k: v for k, v in theirs.items() if k not in ("config", "inputs", "known_failures")}}
    for table in ("config", "inputs"):
        if table in ours or table in theirs:
            merged[table] = {**ours.get(table, {}), **theirs.get(table, {})}
    merged["known_failures"] = [*theirs.get("known_failures", []), *ours.get("known_failures", [])]
    return merged


def entry_model_types() -> list[str]:
    """Every model type with an entry in ``models.toml`` or the project's ``[tool.hfci.models]``."""
    return sorted({*load("models"), *tool_table("models")})


def in_range(versions: str | None, transformers_version: str) -> bool:
    """Whether an entry's ``transformers`` specifier covers the release (no specifier: every one)."""
    # Imported here, not at the top: packaging costs every `hfci` start, and only matching needs it.
    from packaging.specifiers import SpecifierSet

    return not versions or transformers_version in SpecifierSet(versions)


def _covers(value: str | list[str], wanted: str) -> bool:
    """An entry's field names ``wanted``: ``"*"``, the value itself, or a list holding either."""
    values = [value] if isinstance(value, str) else value
    return "*" in values or wanted in values


def known_failure(
    model_type: str,
    head: str,
    check: str,
    device: str,
    runner: str,
    transformers_version: str,
) -> dict[str, Any] | None:
    """The first ``known_failures`` entry of ``models.toml`` covering this check, or None.

    Every field of an entry must cover the check: ``check`` and ``head`` (a name, a list of names
    or ``"*"``), ``device`` and ``runner`` (default ``"*"``), and ``transformers`` (a version
    specifier; no specifier covers every release).
    """
    for entry in model_entry(model_type).get("known_failures", []):
        if (
            _covers(entry.get("check", "*"), check)
            and _covers(entry.get("head", "*"), head)
            and _covers(entry.get("device", "*"), device)
            and _covers(entry.get("runner", "*"), runner)
            and in_range(entry.get("transformers"), transformers_version)
        ):
            return entry
    return None
