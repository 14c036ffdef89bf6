"""Outputs: the seeded forward every check and runner share, and how two outputs are compared.

A tiny model may sample in eval mode (MAE's masking, VITS' durations), so every forward that is
compared with another starts from the same seed. torch is imported inside the functions, as
everywhere in hfci: the pytest plugin imports this module in every pytest run, models or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["SEED", "compare", "seeded_forward", "tensors"]

# The one seed: the tiny weights, the synthetic inputs and every compared forward start from it.
SEED = 0

# Outputs that are caches or bookkeeping, not results to compare (attention maps: any key ending
# in "attentions", which fused attention kernels do not return).
_IGNORED_OUTPUTS = {"past_key_values", "cache_params", "mems"}


def seeded_forward(model: Any, inputs: dict[str, Any]) -> Any:
    """One inference-mode forward from the fixed seed, so a model that samples repeats itself."""
    import torch

    torch.manual_seed(SEED)
    with torch.inference_mode():
        return model(**inputs)


def tensors(output: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(name, tensor) for every tensor in a model output, caches left out."""
    import torch

    if isinstance(output, torch.Tensor):
        yield prefix or "output", output
    elif isinstance(output, dict):
        for key, value in output.items():
            if key not in _IGNORED_OUTPUTS and not str(key).endswith("attentions"):
                yield from tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(output, (tuple, list)):
        for i, value in enumerate(output):
            yield from tensors(value, f"{prefix}[{i}]")


def compare(
    reference: Any, other: Any, atol: float = 1e-5, rtol: float = 1e-4, floor: float = 0.0
) -> list[str]:
    """The names of outputs that differ (shape or values) between two forwards.

    ``atol`` is relative to each reference tensor's largest magnitude: a tiny model's logits
    may all be below 0.05, where a fixed 1e-4 would forgive an error of a few tenths of a percent
    of the whole output, and a depth map in hundreds would fail on rounding alone. No scale is
    taken below ``floor``: a tensor that is rounding alone (a gradient that is zero in exact
    arithmetic) is judged on the scale of its neighbours.
    """
    import torch

    ref, got = dict(tensors(reference)), dict(tensors(other))
    if not ref.keys() & got.keys():
        # A runner may return plain tuples where eager returned named outputs: compare in order.
        ref = {f"[{i}]": t for i, t in enumerate(ref.values())}
        got = {f"[{i}]": t for i, t in enumerate(got.values())}
    problems = [f"{name}: missing" for name in ref if name not in got]
    for name, a in ref.items():
        b = got.get(name)
        if b is None:
            continue
        if a.shape != b.shape:
            problems.append(f"{name}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        elif a.is_floating_point() or a.is_complex():
            x, y = a.float().cpu(), b.float().cpu()
            if not torch.equal(x.isnan(), y.isnan()):
                problems.append(f"{name}: NaN in {int(x.isnan().sum())} vs {int(y.isnan().sum())} elements")
            else:
                scale = x.abs().nan_to_num(0, posinf=0, neginf=0).max().item() if x.numel() else 0.0
                scale = max(scale, floor)
                if not torch.allclose(x, y, atol=atol * (scale or 1.0), rtol=rtol, equal_nan=True):
                    diff = (x - y).abs().nan_to_num(0).max().item()
                    problems.append(f"{name}: max abs diff {diff:.3g} (scale {scale:.3g})")
        elif not torch.equal(a.cpu(), b.cpu()):
            problems.append(f"{name}: values differ")
    return problems
