"""Runners: what executes a case's model on its inputs. ``eager`` is the reference.

A runner is any callable ``runner(model, inputs) -> outputs`` (a tensor, a model output, a dict
or tuple of tensors). It raises ``RunnerSkip`` when it does not apply to a model. A runner that
trains too carries ``runner.train(model, inputs) -> hfci.training.Step``: the loss of one seeded
train-mode forward on the labelled inputs and every parameter's gradient by name
(``hfci.training.gradients`` computes them for a forward of yours). Users add their
own without touching hfci, by name in their pyproject.toml::

    [tool.hfci.runners]
    mine = "my_package.testing:run"

or through an entry point in the ``hfci.runners`` group.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import weakref
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from hfci import training
from hfci.errors import HfciError
from hfci.outputs import seeded_forward, tensors
from hfci.project import tool_table

__all__ = [
    "BUILTIN",
    "DTYPES",
    "ENTRY_POINT_GROUP",
    "TOLERANCES",
    "RunnerError",
    "RunnerSkip",
    "available",
    "compile_",
    "configured",
    "eager",
    "export",
    "load",
    "outputs_of",
    "sdpa",
    "tolerance",
]

Runner = Callable[[Any, dict[str, Any]], Any]
ENTRY_POINT_GROUP = "hfci.runners"

# Parity tolerances (atol, rtol) by the dtype a runner computes in; atol is relative to each
# output's largest magnitude (see hfci.outputs.compare). float32 from ci/measure_tolerance.py over
# the whole catalog (torch 2.13 CPU): eager on 1 thread against 2 differs by at most 2.3e-6 of
# scale (vits, which samples, 4.3e-5), sdpa against eager by at most 1.4e-6 outside the models
# whose sdpa path is a known failure; 1e-5 leaves a margin of 4x over the first.
TOLERANCES = {"float32": (1e-5, 1e-5), "bfloat16": (6e-2, 6e-2), "float16": (1e-2, 1e-2)}


class RunnerSkip(Exception):
    """The runner does not apply to this model; the message says why."""


class RunnerError(HfciError):
    """A runner that cannot be found, imported or called."""


def eager(model: Any, inputs: dict[str, Any]) -> Any:
    """The reference: eager attention, float32, plain forward."""
    return seeded_forward(_with_attention(model, "eager"), inputs)


_VARIANTS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _with_attention(model: Any, implementation: str) -> Any:
    """The model with another attention implementation: a copy, made once per model."""
    current = getattr(getattr(model, "config", None), "_attn_implementation", None)
    # A module that is no transformers model has the one attention path it was written with.
    if current == implementation or not hasattr(model, "set_attn_implementation"):
        return model
    variants = _VARIANTS.setdefault(model, {})
    if implementation not in variants:
        other = copy.deepcopy(model)
        try:
            other.set_attn_implementation(implementation)
        except (ValueError, ImportError, AttributeError) as error:
            raise RunnerSkip(
                f"{type(model).__name__} has no {implementation} attention: {str(error)[:150]}"
            ) from None
        variants[implementation] = other
    return variants[implementation]


def sdpa(model: Any, inputs: dict[str, Any]) -> Any:
    """torch's scaled_dot_product_attention instead of eager attention."""
    if not getattr(model, "_supports_sdpa", False):
        raise RunnerSkip(f"{type(model).__name__} does not support sdpa attention")
    return seeded_forward(_with_attention(model, "sdpa"), inputs)


def _train_eager(model: Any, inputs: dict[str, Any]) -> training.Step:
    return training.gradients(training.trained_copy(_with_attention(model, "eager")), inputs)


def _train_sdpa(model: Any, inputs: dict[str, Any]) -> training.Step:
    if not getattr(model, "_supports_sdpa", False):
        raise RunnerSkip(f"{type(model).__name__} does not support sdpa attention")
    return training.gradients(training.trained_copy(_with_attention(model, "sdpa")), inputs)


eager.train = _train_eager  # type: ignore[attr-defined]
sdpa.train = _train_sdpa  # type: ignore[attr-defined]


_COMPILED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def compile_(model: Any, inputs: dict[str, Any]) -> Any:
    """torch.compile with its default backend (inductor); compiled once per model.

    What is compiled is the eager-attention model the reference runs, so that parity judges the
    compiler alone: an sdpa difference (the default attention of most models) is sdpa's finding.
    """
    import torch

    model = _with_attention(model, "eager")
    if model not in _COMPILED:
        # Each case is a new model whose forward shares code objects with the last one of its
        # class; without a reset, dynamo's recompile limit silently falls back to eager.
        torch._dynamo.reset()
        # Wrapping leaves the model itself untouched, so the eager reference stays eager.
        _COMPILED[model] = torch.compile(model, dynamic=False)
    # Inductor draws random numbers with its own generator unless told to fall back to eager's:
    # a model that samples in its forward (diffusion_gemma's random canvas) would then differ
    # from the seeded reference in what it drew, not in what it computed.
    with torch._inductor.config.patch(fallback_random=True):
        return seeded_forward(_COMPILED[model], inputs)


def _train_compiled(model: Any, inputs: dict[str, Any]) -> training.Step:
    """Forward and backward through torch.compile (AOT autograd compiles the backward too)."""
    import torch

    torch._dynamo.reset()
    model = training.trained_copy(_with_attention(model, "eager"))
    compiled = torch.compile(model, dynamic=False)
    with torch._inductor.config.patch(fallback_random=True):
        # The module's own names: the compiled wrapper would prefix them all.
        return training.gradients(model, inputs, lambda _, fed: compiled(**fed))


compile_.train = _train_compiled  # type: ignore[attr-defined]


def _cast(dtype_name: str) -> Runner:
    def run(model: Any, inputs: dict[str, Any]) -> Any:
        import torch

        dtype = getattr(torch, dtype_name)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if device.type == "cpu" and dtype is torch.float16 and not _cpu_supports_fp16():
            raise RunnerSkip("this CPU build has no float16 matmul")
        cast_model = copy.deepcopy(model).to(dtype)
        return seeded_forward(cast_model, {k: _cast_value(v, dtype) for k, v in inputs.items()})

    run.__name__ = dtype_name
    run.__doc__ = f"The model and its float inputs cast to {dtype_name}."
    return run


def _cast_value(value: Any, dtype: Any) -> Any:
    """A float tensor in ``dtype``; a cache (a decoding step's) with its keys and values too."""
    if hasattr(value, "is_floating_point"):
        return value.to(dtype) if value.is_floating_point() else value
    if hasattr(value, "layers"):
        value = copy.deepcopy(value)
        for layer in value.layers:
            for name in ("keys", "values"):
                tensor = getattr(layer, name, None)
                if hasattr(tensor, "is_floating_point") and tensor.is_floating_point():
                    setattr(layer, name, tensor.to(dtype))
    return value


@cache
def _cpu_supports_fp16() -> bool:
    import torch

    try:
        torch.ones(2, 2, dtype=torch.float16) @ torch.ones(2, 2, dtype=torch.float16)
    except RuntimeError:
        return False
    return True


def export(model: Any, inputs: dict[str, Any]) -> Any:
    """torch.export traces the model; the exported program's outputs are compared."""
    import torch

    if any(hasattr(v, "layers") for v in inputs.values()):
        raise RunnerSkip("a decoding step's cache object is not exported")
    # torch.export takes tensors first, then the other keyword arguments.
    tensor_inputs = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    others = {k: v for k, v in inputs.items() if k not in tensor_inputs}
    try:
        program = torch.export.export(model, args=(), kwargs={**tensor_inputs, **others}, strict=False)
    except Exception as error:
        raise AssertionError(
            f"torch.export failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        ) from None
    return seeded_forward(program.module(), {**tensor_inputs, **others})


BUILTIN: dict[str, Runner] = {
    "eager": eager,
    "sdpa": sdpa,
    "compile": compile_,
    "bf16": _cast("bfloat16"),
    "fp16": _cast("float16"),
    "export": export,
}

DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def tolerance(runner: str) -> tuple[float, float]:
    """(atol, rtol) for comparing a runner's outputs with the eager float32 reference."""
    return TOLERANCES[DTYPES.get(runner, "float32")]


def _import(target: str, where: str) -> Runner:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise RunnerError(f"runner {where}: {target!r} is not of the form 'module:callable'")
    try:
        module = importlib.import_module(module_name)
        runner = getattr(module, attribute)
    except (ImportError, AttributeError) as error:
        raise RunnerError(f"runner {where}: cannot import {target!r}: {error}") from None
    if not callable(runner):
        raise RunnerError(f"runner {where}: {target!r} is not callable")
    return runner


def configured(pyproject: Path | None = None) -> dict[str, str]:
    """``[tool.hfci.runners]`` of the project: name -> 'module:callable'."""
    return tool_table("runners", pyproject)


def available(pyproject: Path | None = None) -> dict[str, str]:
    """Every runner name and where it comes from (built in, pyproject, entry point)."""
    names = dict.fromkeys(BUILTIN, "built in")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names[ep.name] = f"entry point {ep.value}"
    for name, target in configured(pyproject).items():
        names[name] = target
    return names


def load(name: str, pyproject: Path | None = None) -> Runner:
    """The runner called ``name``; a clear error naming the valid ones otherwise."""
    user = configured(pyproject)
    if name in user:
        return _import(user[name], f"{name!r} ([tool.hfci.runners])")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _import(ep.value, f"{name!r} (entry point)")
    if name in BUILTIN:
        return BUILTIN[name]
    raise RunnerError(f"unknown runner {name!r}; valid: {', '.join(available(pyproject))}")


def outputs_of(name: str, result: Any) -> Any:
    """The runner's result, checked to be something outputs can be compared on."""
    import torch

    if isinstance(result, Mapping | tuple | list | torch.Tensor) and list(tensors(result)):
        return result
    raise RunnerError(
        f"runner {name!r} returned {type(result).__name__}; expected a model output "
        "(a tensor, or a dict, tuple or ModelOutput of tensors)"
    )
