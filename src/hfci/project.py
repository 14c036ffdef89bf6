"""The user's project: ``[tool.hfci]`` in the nearest pyproject.toml, read and checked once.

A backend maintainer keeps what is theirs in their own repository: their runners, entries in
the format of hfci's ``data/models.toml`` (a known failure of *their* backend with its reason, an
input hint), which :mod:`hfci.data` lays over hfci's own, the default selection
(``[tool.hfci.select]``, checked by :mod:`hfci.selection`), and where the baselines, matrices and
results live. A key hfci does not know is one clear error naming the valid ones, rather than a
setting that silently does nothing.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from hfci.errors import HfciError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "CHECKPOINT_KEYS",
    "ENTRY_KEYS",
    "EXPECTATIONS",
    "FAILURE_KEYS",
    "FOLDERS",
    "TABLES",
    "ProjectError",
    "checkpoint_entries",
    "failure_problem",
    "find_pyproject",
    "folder",
    "tool_table",
]

# What [tool.hfci] may hold: tables, and folders (paths relative to the pyproject.toml) with
# the default each has without one (relative to the working directory, as before there was any).
TABLES = ("runners", "models", "select", "checkpoints")
FOLDERS = {"baselines": "baselines", "matrices": "matrices", "results": "results"}
ENTRY_KEYS = ("config", "inputs", "skip", "known_failures")
# What an entry of [tool.hfci.checkpoints] may say, when it is a table rather than a path.
CHECKPOINT_KEYS = ("path", "hub")
# What a known failure may say it expects (``expect = ...``) instead of the exception it raises.
EXPECTATIONS = ("crash", "timeout")
FAILURE_KEYS = (
    "check",
    "head",
    "device",
    "runner",
    "run",
    "reason",
    "raises",
    "match",
    "transformers",
    "expect",
)


class ProjectError(HfciError):
    """A ``[tool.hfci]`` table hfci cannot use."""


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` (the working directory)."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _unknown(where: str, keys: Any, valid: tuple[str, ...]) -> None:
    for key in keys:
        if key not in valid:
            raise ProjectError(f"{where}: unknown key {key!r}; valid: {', '.join(valid)}")


def _check_models(path: Path, models: Any) -> None:
    if not isinstance(models, dict):
        raise ProjectError(f"{path}: [tool.hfci.models] must be a table of model types")
    for model_type, entry in models.items():
        where = f"{path}: [tool.hfci.models.{model_type}]"
        if not isinstance(entry, dict):
            raise ProjectError(f"{where} must be a table")
        _unknown(where, entry, ENTRY_KEYS)
        for failure in entry.get("known_failures", []):
            _unknown(f"{where} known_failures", failure, FAILURE_KEYS)
            if not failure.get("reason"):
                raise ProjectError(f"{where} known_failures: every entry needs a reason")
            problem = failure_problem(failure)
            if problem:
                raise ProjectError(f"{where} known_failures: {problem}")


def failure_problem(failure: dict[str, Any]) -> str | None:
    """What is wrong with a known failure's expectation, or None: it must say how it fails."""
    expect = failure.get("expect")
    if expect is not None and expect not in EXPECTATIONS:
        return f"expect = {expect!r}; valid: {', '.join(EXPECTATIONS)}"
    if expect is None and not (failure.get("raises") or failure.get("match")):
        return (
            f"the entry for {failure.get('check', '*')!r} says neither what it raises (raises = "
            "'ExceptionType', match = 'message pattern') nor expect = 'crash' | 'timeout'; "
            "without it any failure would pass as the known one"
        )
    raises = failure.get("raises")
    if raises is not None and not (
        isinstance(raises, str) or (isinstance(raises, list) and all(isinstance(r, str) for r in raises))
    ):
        return f"raises = {raises!r}: expected an exception class name or a list of them"
    try:
        re.compile(failure.get("match") or "")
    except re.error as error:
        return f"match = {failure['match']!r} is no regular expression: {error}"
    return None


def _check_select(path: Path, select: Any) -> None:
    # Which option names are valid is the selection's to say; here only the value types.
    if not isinstance(select, dict):
        raise ProjectError(f"{path}: [tool.hfci.select] must be a table of selection options")
    for name, value in select.items():
        texts = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not (isinstance(value, str | bool) or texts):
            raise ProjectError(
                f"{path}: [tool.hfci.select] {name} = {value!r}: expected a string, a list of strings or a boolean"
            )


@cache
def _read(path: Path) -> dict[str, Any]:
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("hfci", {})
    except tomllib.TOMLDecodeError as error:
        raise ProjectError(f"{path}: {error}") from None
    if not isinstance(table, dict):
        raise ProjectError(f"{path}: [tool.hfci] must be a table")
    _unknown(f"{path}: [tool.hfci]", table, (*TABLES, *FOLDERS))
    for name in FOLDERS:
        if name in table and (not isinstance(table[name], str) or not table[name].strip()):
            raise ProjectError(f"{path}: [tool.hfci] {name} must be a folder path, got {table[name]!r}")
    _check_select(path, table.get("select", {}))
    runners = table.get("runners", {})
    if not isinstance(runners, dict) or not all(isinstance(v, str) for v in runners.values()):
        raise ProjectError(f"{path}: [tool.hfci.runners] must map names to 'module:callable' strings")
    _check_models(path, table.get("models", {}))
    return table


@cache
def _nearest(directory: Path) -> Path | None:
    # Known failures are matched once per test at collection: the walk up the tree is done once.
    return find_pyproject(directory)


def _project(pyproject: Path | None) -> tuple[Path | None, dict[str, Any]]:
    """The project's pyproject.toml (resolved; None without one) and its checked ``[tool.hfci]``."""
    path = pyproject or _nearest(Path.cwd())
    if path is None or not path.is_file():
        return None, {}
    path = path.resolve()
    return path, _read(path)


def tool_table(name: str, pyproject: Path | None = None) -> dict[str, Any]:
    """``[tool.hfci.<name>]`` of the project (empty without one), the whole table checked."""
    return dict(_project(pyproject)[1].get(name, {}))


def folder(name: str, pyproject: Path | None = None) -> Path:
    """Where the project keeps its ``baselines``, ``matrices`` or ``results``.

    ``[tool.hfci] <name> = "path"`` is read relative to the pyproject.toml, so every command finds
    the same folder from anywhere in the project; without it, ``<name>`` in the working directory.
    """
    if name not in FOLDERS:
        raise ProjectError(f"unknown folder {name!r}; valid: {', '.join(FOLDERS)}")
    path, table = _project(pyproject)
    value = table.get(name)
    return path.parent / value if path is not None and value else Path(FOLDERS[name])


# A checkpoint's name goes into case ids, node ids and baseline keys: nothing that splits them.
_CHECKPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def checkpoint_entries(pyproject: Path | None = None) -> dict[str, dict[str, Any]]:
    """``[tool.hfci.checkpoints]``, checked: name -> ``{"path": Path | None, "hub": str | None}``.

    An entry is a path (``name = "models/mine"``) or a table (``name = { path = "...", hub =
    "org/id" }``); a relative path is taken from the pyproject's directory, not the working one,
    so the entry means the same wherever pytest is started.
    """
    path, project = _project(pyproject)
    if path is None:
        return {}
    table = project.get("checkpoints", {})
    where = f"{path}: [tool.hfci.checkpoints]"
    if not isinstance(table, dict):
        raise ProjectError(f"{where} must map names to paths or {{ path = ..., hub = ... }} tables")
    entries: dict[str, dict[str, Any]] = {}
    for name, value in table.items():
        if not _CHECKPOINT_NAME.match(name):
            raise ProjectError(
                f"{where}: bad name {name!r}; use letters, digits, '_', '.' and '-' (it goes into case ids)"
            )
        entry = {"path": value} if isinstance(value, str) else value
        if not isinstance(entry, dict):
            raise ProjectError(
                f"{where}.{name} must be a path or a table with keys {', '.join(CHECKPOINT_KEYS)}"
            )
        _unknown(f"{where}.{name}", entry, CHECKPOINT_KEYS)
        if not entry or not all(isinstance(v, str) and v for v in entry.values()):
            raise ProjectError(f"{where}.{name} needs a non-empty path or hub (strings)")
        local = entry.get("path")
        entries[name] = {"path": (path.parent / local) if local else None, "hub": entry.get("hub")}
    return entries
