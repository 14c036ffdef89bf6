"""Selection: the one declaration of what a run covers, for every front end.

Each option is declared once here (as nox declares its options once in ``_option_set``). The
command line (argparse), the pytest plugin and the argv handed from ``hfci run`` to pytest or
from ``hfci matrix`` to each job are all derived from it, so no front end can drift: every
command that selects model types accepts the same options, spelled and validated the same way.

Validation lives here too: a bad value is one ``HfciError`` naming it and the valid ones.

A project's ``[tool.hfci.select]`` holds its default selection, spelled as the options are
(``tier = ["critical"]``, ``one-head = true``). An option given on the command line replaces that
option's default, and only that one: ``--category vision`` in a project that defaults to the
critical tier runs the critical tier's vision models.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from hfci.catalog import CATEGORIES, TIERS, Catalog, ModelRecord
from hfci.devices import KNOWN_DEVICES
from hfci.errors import HfciError
from hfci.impact import Impact, changed_since
from hfci.project import tool_table

__all__ = [
    "CASE_OPTIONS",
    "CHANGED_SINCE",
    "CHECKPOINT",
    "MODEL_OPTIONS",
    "OPTIONS",
    "Option",
    "Selection",
    "SelectionError",
    "add_arguments",
    "add_pytest_options",
    "parse_shard",
    "project_defaults",
]


@dataclass(frozen=True)
class Option:
    """One selection option: ``--name``, repeatable unless ``single``, a switch if ``switch``."""

    name: str
    help: str
    single: bool = False
    switch: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def argparse_kwargs(self) -> dict[str, Any]:
        """What ``add_argument`` (argparse) and ``addoption`` (pytest) both take for it."""
        if self.switch:
            return {"action": "store_true", "default": False, "help": self.help}
        kwargs: dict[str, Any] = {"help": self.help, "metavar": self.metavar or self.dest.upper()}
        if self.single:
            return {**kwargs, "default": None}
        return {**kwargs, "action": "append", "default": []}


# Which model types: every command that selects accepts these.
MODEL_OPTIONS = (
    Option("category", f"only this category, repeatable: {', '.join(CATEGORIES)}"),
    Option("family", "only this family, repeatable: encoder-only, decoder-only, vision-encoder, ..."),
    Option("tier", f"only this priority tier, repeatable: {', '.join(TIERS)}"),
    Option(
        "model", "only this model type, repeatable, e.g. xlm-roberta (its identifier xlm_roberta works too)"
    ),
)
# Which cases of them, where and how: the commands that run or plan cases.
CASE_OPTIONS = (
    Option("device", f"run on this device, repeatable: {', '.join(KNOWN_DEVICES)} (default: best present)"),
    Option(
        "runner", "check this runner against eager, repeatable: sdpa, compile, bf16, fp16, export, or yours"
    ),
    Option(
        "one-head",
        "one head per model type (its bare Model where it has one): every architecture once",
        switch=True,
    ),
)
SHARD = Option(
    "shard", "run only shard INDEX/COUNT of the selection, e.g. 3/8", single=True, metavar="INDEX/COUNT"
)
# Real checkpoints as cases: the commands that run cases (a matrix job's machine has no such path).
CHECKPOINT = Option(
    "checkpoint",
    "also check this save_pretrained directory (or the name of a [tool.hfci.checkpoints] entry), "
    "repeatable; alone, only checkpoints run, a model filter adds the tiny cases it selects",
    metavar="PATH",
)
# Test impact: the model types a transformers upgrade touches (``hfci.impact``). Not a model
# option: a matrix job's machine has no such file, so ``hfci matrix`` does not take it.
CHANGED_SINCE = Option(
    "changed-since",
    "only the model types whose transformers sources moved since this results file, directory "
    "of shard results or baseline was written, and the types it does not have",
    single=True,
    metavar="RESULTS_OR_BASELINE",
)
OPTIONS = (*MODEL_OPTIONS, CHANGED_SINCE, CHECKPOINT, *CASE_OPTIONS, SHARD)


class SelectionError(HfciError):
    """A selection value that names nothing: a bad shard, an unknown option."""


def project_defaults(options: Iterable[Option] = OPTIONS) -> dict[str, Any]:
    """The project's ``[tool.hfci.select]`` as ``{dest: value}`` for ``options``, checked."""
    allowed = {option.name: option for option in (*MODEL_OPTIONS, *CASE_OPTIONS)}
    wanted = {option.name for option in options}
    defaults: dict[str, Any] = {}
    for name, value in tool_table("select").items():
        option = allowed.get(name) or allowed.get(name.replace("_", "-"))
        if option is None:
            raise SelectionError(f"[tool.hfci.select]: unknown option {name!r}; valid: {', '.join(allowed)}")
        if option.switch != isinstance(value, bool):
            expected = "true or false" if option.switch else "a string or a list of strings"
            raise SelectionError(f"[tool.hfci.select] {name} = {value!r}: expected {expected}")
        if option.name in wanted:
            defaults[option.dest] = (
                value if option.switch else tuple([value] if isinstance(value, str) else value)
            )
    return defaults


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/8"`` -> ``(3, 8)``; the index is 1-based, as people count jobs."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise SelectionError(f"bad shard {text!r}; expected INDEX/COUNT, e.g. 3/8")
    index_n, count_n = int(index), int(count)
    if count_n < 1 or not 1 <= index_n <= count_n:
        raise SelectionError(f"bad shard {text!r}; the index must be between 1 and the count (1-{count_n})")
    return index_n, count_n


@dataclass(frozen=True)
class Selection:
    """What a run covers; empty filters select everything."""

    category: tuple[str, ...] = ()
    family: tuple[str, ...] = ()
    tier: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    changed_since: str | None = None
    checkpoint: tuple[str, ...] = ()
    device: tuple[str, ...] = ()
    runner: tuple[str, ...] = ()
    one_head: bool = False
    shard: str | None = None

    @classmethod
    def from_values(
        cls,
        get: Callable[[str], Any],
        options: Iterable[Option] = OPTIONS,
        defaults: Mapping[str, Any] | None = None,
    ) -> Selection:
        """The selection from ``get(dest)`` (argparse's namespace, pytest's getoption); an option
        left empty takes its default from ``defaults`` (the project's, when not given)."""
        options = tuple(options)
        values: dict[str, Any] = dict(project_defaults(options) if defaults is None else defaults)
        for option in options:
            value = get(option.dest)
            if option.switch:
                values[option.dest] = bool(value) or values.get(option.dest, False)
            elif option.single:
                values[option.dest] = value or None
            elif value:
                values[option.dest] = tuple(value)
            else:
                values.setdefault(option.dest, ())
        return cls(**values)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, options: Iterable[Option] = OPTIONS) -> Selection:
        """The selection parsed by :func:`add_arguments`; options a command lacks stay empty."""
        return cls.from_values(lambda dest: getattr(args, dest, None), options)

    def argv(self) -> list[str]:
        """The selection as command-line options: what ``hfci run`` or a matrix job passes on."""
        args: list[str] = []
        for option in OPTIONS:
            value = getattr(self, option.dest)
            if option.switch:
                args += [option.flag] if value else []
            elif option.single:
                args += [option.flag, value] if value else []
            else:
                for item in value:
                    args += [option.flag, item]
        return args

    @property
    def filters_models(self) -> bool:
        """Whether a model filter (category, family, tier, model, changed-since) was given."""
        return bool(self.category or self.family or self.tier or self.model or self.changed_since)

    def impact(self, catalog: Catalog) -> Impact | None:
        """What ``--changed-since`` selects from the catalog, and why; None without it. Worked
        out once per file and catalog: every front end asks for the records more than once."""
        if not self.changed_since:
            return None
        key = (self.changed_since, id(catalog))
        if key not in _IMPACTS or _IMPACTS[key][0] is not catalog:
            _IMPACTS[key] = (catalog, changed_since(self.changed_since, catalog))
        return _IMPACTS[key][1]

    def records(self, catalog: Catalog) -> list[ModelRecord]:
        """The model types selected, validated against the catalog."""
        records = catalog.select(self.category, self.family, self.tier, self.model)
        impact = self.impact(catalog)
        return records if impact is None else [r for r in records if r.model_type in impact.selected]

    def cases(self, catalog: Catalog) -> list[tuple[ModelRecord, str]]:
        """(record, head name) of every selected case, in catalog order; the shard is not applied."""
        return [
            (record, head.name)
            for record in self.records(catalog)
            if record.has_model
            for head in ((record.base_head,) if self.one_head else record.heads)
        ]

    def case_ids(self, catalog: Catalog) -> list[str]:
        """``<model type>/<head>`` of every selected case, sorted (what shards are planned on)."""
        return sorted(f"{record.model_type}/{head}" for record, head in self.cases(catalog))

    def validate(self, catalog: Catalog) -> None:
        """Raise one clear error for the first bad model filter or shard (devices and runners are
        validated where they are resolved: whether a device is present depends on the machine)."""
        self.records(catalog)
        if self.shard:
            parse_shard(self.shard)

    def with_values(self, **changes: Any) -> Selection:
        """A copy with some values replaced (tuples for repeatable options)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SelectionError(
                f"unknown selection option {unknown[0]!r}; valid: {', '.join(sorted(known))}"
            )
        return Selection(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


# (file, catalog id) -> (the catalog, what --changed-since selects from it).
_IMPACTS: dict[tuple[str, int], tuple[Catalog, Impact]] = {}


def add_arguments(parser: argparse.ArgumentParser, options: Sequence[Option] = OPTIONS) -> None:
    """Declare ``options`` on an argparse parser."""
    for option in options:
        parser.add_argument(option.flag, dest=option.dest, **option.argparse_kwargs())


def add_pytest_options(group: Any, options: Sequence[Option] = OPTIONS) -> None:
    """Declare ``options`` on a pytest option group (``parser.getgroup(...)``)."""
    for option in options:
        group.addoption(option.flag, dest=option.dest, **option.argparse_kwargs())
