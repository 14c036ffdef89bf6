"""Cases as pytest parameters: what each check runs on, its marks, and the order items run in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import pytest

from hfci import data
from hfci.case import TinyCase, build_case, build_checkpoint_case
from hfci.catalog import Catalog, ModelRecord, load_catalog
from hfci.checkpoints import Checkpoint, selected_checkpoints
from hfci.matrix import shard_for_device
from hfci.results import CHECKS
from hfci.selection import Selection, parse_shard

__all__ = [
    "CaseSpec",
    "build_spec",
    "case_meta",
    "case_of",
    "case_params",
    "check_of",
    "fails_as_expected",
    "group_of",
    "item_meta",
    "known_failure",
    "known_failure_entry",
    "marker_name",
    "param_index",
    "run_order",
    "selected_cases",
    "spec_of_node_id",
]


@dataclass(frozen=True)
class CaseSpec:
    """One parametrization: a head of a model type on a device, run by a runner.

    With ``checkpoint``, the user's checkpoint of that model type and head rather than a tiny
    model: its case id is ``ckpt:<name>:<hash12>/<head>`` (see :mod:`hfci.checkpoints`).
    """

    record: ModelRecord
    head: str
    device: str
    runner: str = "eager"
    checkpoint: Checkpoint | None = None

    @property
    def case(self) -> str:
        if self.checkpoint is not None:
            return self.checkpoint.case()
        return f"{self.record.model_type}/{self.head}"

    @property
    def id(self) -> str:
        suffix = "" if self.runner == "eager" else f"-{self.runner}"
        return f"{self.case}-{self.device}{suffix}"


def marker_name(value: str) -> str:
    """A category or family as a marker: ``time-series`` -> ``time_series``."""
    return value.replace("-", "_")


def selected_cases(selection: Selection, devices: list[str], catalog: Catalog) -> list[CaseSpec]:
    """The cases of the selection on the chosen devices, cut to the shard if one is given.

    Checkpoints (``--checkpoint``, else the project's ``[tool.hfci.checkpoints]``) replace the
    tiny cases: a run that names checkpoints is about them. A model filter (``--model``,
    ``--category``, ...) brings back the tiny cases it selects, and applies to the checkpoints
    too, by their model type.
    """
    checkpoints = selected_checkpoints(selection.checkpoint, catalog)
    wanted = {r.model_type for r in selection.records(catalog)} if selection.filters_models else None
    tiny = selection.cases(catalog) if wanted is not None or not checkpoints else []
    own = [c for c in checkpoints if wanted is None or c.model_type in wanted]
    specs = [
        *(CaseSpec(record, head, device) for device in devices for record, head in tiny),
        *(CaseSpec(catalog[c.model_type], c.head, device, checkpoint=c) for device in devices for c in own),
    ]
    if not selection.shard:
        return specs
    index, count = parse_shard(selection.shard)
    keep: set[tuple[str, str]] = set()
    for device in devices:
        cases = [s.case for s in specs if s.device == device]
        keep |= {(c, device) for c in shard_for_device(cases, device, index, count)}
    return [s for s in specs if (s.case, s.device) in keep]


def known_failure_entry(spec: CaseSpec, check: str) -> dict[str, Any] | None:
    """The models.toml known failure matching this case and check, if any."""
    return data.known_failure(
        spec.record.model_type,
        spec.head,
        check,
        spec.device,
        spec.runner,
        load_catalog().transformers_version,
    )


def known_failure(spec: CaseSpec, check: str) -> str | None:
    """The reason of a models.toml known failure matching this case and check, if any."""
    entry = known_failure_entry(spec, check)
    return entry.get("reason", "known failure") if entry is not None else None


def fails_as_expected(entry: dict[str, Any], error: BaseException) -> bool:
    """Whether an exception is the failure a known-failure entry expects.

    ``raises`` names the exception's class, or a list of them (a base class: ``FactoryError``
    covers ``MissingDependency``), and ``match`` is a pattern its message contains; either may be found
    anywhere in the chain of causes, so a build error matches by what the build raised.
    ``expect = "timeout"`` matches pytest-timeout's failure only; ``expect = "crash"`` matches no
    exception, since a crash ends the worker instead (see :mod:`hfci.pytest.isolation`).
    """
    expect = entry.get("expect")
    if expect == "timeout":
        return str(error).startswith("Timeout (>")
    if expect == "crash":
        return False
    chain = list(_causes(error))
    raises, pattern = entry.get("raises"), entry.get("match")
    names = [raises] if isinstance(raises, str) else list(raises or ())
    if names and not any(cls.__name__ in names for e in chain for cls in type(e).__mro__):
        return False
    return not pattern or any(re.search(pattern, str(e)) for e in chain)


# A frame's file inside the transformers package, from "transformers/" on.
_IN_TRANSFORMERS = re.compile(r"(?:^|/)(transformers/[^:]+\.py)$")


def raised(error: BaseException) -> str:
    """``Type: first line`` of what was raised: the root of its causes (a build error's own), and
    the innermost line it came through in transformers, ``(at transformers/.../x.py:123)``."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
    where = transformers_line(error.__traceback__)
    return f"{text} (at {where})" if where else text


def transformers_path(filename: str) -> str:
    """``transformers/models/x/modeling_x.py`` for a file inside the transformers package, else ""."""
    found = _IN_TRANSFORMERS.search(str(filename).replace("\\", "/"))
    return found.group(1) if found else ""


def transformers_line(tb: TracebackType | None) -> str:
    """``transformers/models/x/modeling_x.py:123``: the innermost frame of ``tb`` inside transformers."""
    found = ""
    while tb is not None:
        path = transformers_path(tb.tb_frame.f_code.co_filename)
        if path:
            found = f"{path}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def case_params(check: str, cases: list[CaseSpec], runners: tuple[str, ...]) -> list[Any]:
    """The pytest parameters of one check over the selected cases."""
    chosen = runners or ("eager",)
    # Parity compares each other runner with eager; every other check runs on eager itself.
    wanted = [r for r in chosen if r != "eager"] if check == "parity" else [r for r in chosen if r == "eager"]
    params = []
    for base in cases:
        if check in ("generate", "cache") and not base.record.head(base.head).generative:
            continue
        if check == "device_parity" and base.device == "cpu":
            continue
        for runner in wanted:
            params.append(_param(replace(base, runner=runner), check))
    return params


def _param(spec: CaseSpec, check: str) -> Any:
    marks = [
        pytest.mark.model,
        getattr(pytest.mark, marker_name(spec.record.category)),
        getattr(pytest.mark, spec.device),
        getattr(pytest.mark, f"tier_{spec.record.tier}"),
        getattr(pytest.mark, f"family_{marker_name(spec.record.family)}"),
        pytest.mark.xdist_group(group_of(spec)),
    ]
    if spec.checkpoint is not None:
        marks.append(pytest.mark.checkpoint)
    known = known_failure_entry(spec, check)
    if known is not None:
        # run = false: a failure that costs the whole timeout to show (a compile past 300 s)
        # is reported as expected without paying for it again.
        reason = known.get("reason", "known failure")
        marks.append(pytest.mark.xfail(reason=reason, strict=False, run=known.get("run", True)))
    return pytest.param(spec, id=spec.id, marks=marks)


def case_of(item: pytest.Item) -> CaseSpec | None:
    """The case an item was parametrized with, or None for any other test."""
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("hfci_case") if callspec is not None else None
    return spec if isinstance(spec, CaseSpec) else None


def check_of(item: pytest.Item) -> str:
    """The check an item runs: its test function's name without ``test_``."""
    return getattr(item, "originalname", item.name).removeprefix("test_")


def case_meta(spec: CaseSpec, check: str) -> dict[str, str]:
    """What a results record says about the case and check."""
    return {
        "case": spec.case,
        "model_type": spec.record.model_type,
        "head": spec.head,
        "device": spec.device,
        "check": check,
        "category": spec.record.category,
        "tier": spec.record.tier,
        "runner": spec.runner,
    }


def item_meta(spec: CaseSpec, item: pytest.Item) -> dict[str, str]:
    """The record's facts of an item, carried on its user properties to the controller."""
    return case_meta(spec, check_of(item))


_NODE_ID = re.compile(r"::test_(\w+)\[(.+)\](?:@.*)?$")


def param_index(cases: list[CaseSpec], runners: tuple[str, ...]) -> dict[str, CaseSpec]:
    """Every parameter id the selection can produce -> its case (each runner its own id)."""
    return {
        spec.id: spec for base in cases for spec in (replace(base, runner=r) for r in ("eager", *runners))
    }


def spec_of_node_id(node_id: str, index: dict[str, CaseSpec]) -> tuple[CaseSpec, str] | None:
    """The case and check of a model test's node id (``...::test_parity[bert/Model-cpu-sdpa]``).

    The xdist controller collects no items: it knows a test by its id alone.
    """
    match = _NODE_ID.search(node_id)
    spec = index.get(match.group(2)) if match else None
    return (spec, match.group(1)) if spec is not None and match else None


def build_spec(spec: CaseSpec, device: str | None = None) -> TinyCase:
    """The model and inputs of a case, on its device or ``device``: tiny, or the checkpoint's."""
    where = device or spec.device
    if spec.checkpoint is not None:
        return build_checkpoint_case(spec.checkpoint, spec.record, where)
    return build_case(spec.record, spec.head, where)


def group_of(spec: CaseSpec) -> str:
    """The unit one worker runs whole: every check and runner of a case on a device."""
    return f"{spec.case}-{spec.device}"


def run_order(item: pytest.Item) -> tuple[Any, ...]:
    """All checks of one case together, in ``CHECKS`` order, so a worker builds each model once."""
    spec = case_of(item)
    if spec is None:
        return ("",)
    check = check_of(item)
    return (spec.id, CHECKS.index(check) if check in CHECKS else len(CHECKS))
