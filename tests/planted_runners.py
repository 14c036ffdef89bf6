"""Runners with one planted bug each, the way a backend gets things wrong (tests/test_mutation.py).

Each computes what eager computes but for its bug, and raises RunnerSkip where its bug cannot
apply (a model with no bias has none to drop), so the mutation test counts a bug as missed only
where it changed something a check should have seen.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from hfci import training
from hfci.outputs import compare, seeded_forward, tensors
from hfci.runners import RunnerSkip, eager
from hfci.variants import text_batch

_COPIES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _copy(model: Any, name: str, plant) -> Any:
    """The model with one bug planted, made once per model."""
    copies = _COPIES.setdefault(model, {})
    if name not in copies:
        other = copy.deepcopy(model)
        with torch.no_grad():
            plant(other)
        copies[name] = other
    return copies[name]


def _batch(inputs: dict[str, Any]) -> int:
    ids = inputs.get("input_ids")
    first = ids if ids is not None else next(v for v in inputs.values() if isinstance(v, torch.Tensor))
    return first.shape[0]


# -- the bugs ----------------------------------------------------------------------------------


def _zero_biases(model: Any) -> None:
    for name, parameter in model.named_parameters():
        if name.rsplit(".", 1)[-1] == "bias" and parameter.is_floating_point():
            parameter.zero_()


def no_bias(model: Any, inputs: dict[str, Any]) -> Any:
    """Linear and convolution biases dropped."""
    if not any(n.rsplit(".", 1)[-1] == "bias" and bool(p.any()) for n, p in model.named_parameters()):
        raise RunnerSkip("no bias to drop")
    return eager(_copy(model, "no_bias", _zero_biases), inputs)


def _norms(model: Any) -> list[Any]:
    return [m for m in model.modules() if "norm" in type(m).__name__.lower() and hasattr(m, "weight")]


def _plain_norms(model: Any) -> None:
    # A norm put back to its initial scale and shift (1 and 0, or 0 where the scale is 1 + w)
    # is a norm whose learned affine part is ignored.
    for module in _norms(model):
        model._init_weights(module)


def no_norm_affine(model: Any, inputs: dict[str, Any]) -> Any:
    """Normalisation layers' learned scale and shift ignored."""
    if not _norms(model) or not hasattr(model, "_init_weights"):
        raise RunnerSkip("no normalisation layer with a learned scale")
    return eager(_copy(model, "no_norm_affine", _plain_norms), inputs)


def _drops(model: Any) -> bool:
    return any(
        isinstance(value, float) and value > 0
        for module in model.modules()
        for key, value in vars(module).items()
        if "drop" in key or key == "p"
    ) or any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


def dropout_on(model: Any, inputs: dict[str, Any]) -> Any:
    """Dropout left on at inference."""
    if not _drops(model):
        raise RunnerSkip("no dropout to leave on")
    return eager(_copy(model, "dropout_on", lambda m: m.train()), inputs)


def perturbed(model: Any, inputs: dict[str, Any]) -> Any:
    """Every float output off by 1e-3 of its spread (a kernel that rounds a little too much)."""
    output = eager(model, inputs)
    generator = torch.Generator().manual_seed(1)
    return _map_floats(
        output, lambda t: t + 1e-3 * t.std().nan_to_num(0) * torch.randn(t.shape, generator=generator)
    )


def bf16_as_fp32(model: Any, inputs: dict[str, Any]) -> Any:
    """Computes in bfloat16 while claiming float32: the outputs come back cast up."""
    cast = _copy(model, "bf16", lambda m: m.to(torch.bfloat16))
    cast_inputs = {
        k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in inputs.items()
    }
    return _map_floats(seeded_forward(cast, cast_inputs), lambda t: t.float())


def batch_mix_up(model: Any, inputs: dict[str, Any]) -> Any:
    """Every row of the batch gets the first row's result."""
    batch = _batch(inputs)
    if batch < 2:
        raise RunnerSkip("a batch of one row")
    output = eager(model, inputs)
    rows = [t for _, t in tensors(output) if t.is_floating_point() and t.dim() and t.shape[0] == batch]
    if not any(compare({"r": t[:1]}, {"r": t[1:2]}) for t in rows):
        raise RunnerSkip("the rows' outputs already agree")
    return _map_floats(output, lambda t: t[:1].expand_as(t).clone() if t.dim() and t.shape[0] == batch else t)


_CALLS = {"no_mask": 0, "wrong_scale": 0}


def _no_mask_attention(module, query, key, value, attention_mask, **kwargs):
    _CALLS["no_mask"] += 1
    return sdpa_attention_forward(module, query, key, value, None, **kwargs)


AttentionInterface.register("hfci_planted_no_mask", _no_mask_attention)


def no_mask(model: Any, inputs: dict[str, Any]) -> Any:
    """An attention kernel that drops the mask it is handed; a causal model stays causal."""
    plain = {k: v for k, v in inputs.items() if k not in ("position_ids", "past_key_values")}
    if text_batch(plain) is not None:
        raise RunnerSkip(f"only a text batch is padded: {text_batch(plain)}")
    try:
        planted = _copy(model, "no_mask", lambda m: m.set_attn_implementation("hfci_planted_no_mask"))
    except (ValueError, ImportError, AttributeError, TypeError) as error:
        raise RunnerSkip(f"no pluggable attention: {error}") from None
    return _through_interface(planted, inputs, "no_mask")


def forgets_cache(model: Any, inputs: dict[str, Any]) -> Any:
    """Decodes a step without the cache it is handed: the new token sees no history."""
    if "past_key_values" not in inputs:
        # Where hfci decodes a step (a text decoder), the bug shows there; elsewhere it cannot.
        if model.config.is_encoder_decoder or not model.can_generate() or text_batch(inputs) is not None:
            raise RunnerSkip("no cached decoding step")
        return eager(model, inputs)
    fresh = {k: v for k, v in inputs.items() if k != "past_key_values"}
    fresh["attention_mask"] = inputs["attention_mask"][:, -fresh["input_ids"].shape[1] :]
    return eager(model, fresh)


def _misscaled_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    _CALLS["wrong_scale"] += 1
    # 1/d where 1/sqrt(d) is meant: the softmax comes out too flat.
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, scaling=1 / query.shape[-1], **kwargs
    )


AttentionInterface.register("hfci_planted_scale", _misscaled_attention)


def wrong_scale(model: Any, inputs: dict[str, Any]) -> Any:
    """An attention kernel that scales scores by 1/d instead of 1/sqrt(d)."""
    try:
        planted = _copy(model, "wrong_scale", lambda m: m.set_attn_implementation("hfci_planted_scale"))
    except (ValueError, ImportError, AttributeError, TypeError) as error:
        raise RunnerSkip(f"no pluggable attention: {error}") from None
    return _through_interface(planted, inputs, "wrong_scale")


def _through_interface(planted: Any, inputs: dict[str, Any], name: str) -> Any:
    """The planted model's output, where its attention went through the planted kernel at all."""
    before = _CALLS[name]
    output = seeded_forward(planted, inputs)
    if _CALLS[name] == before:
        raise RunnerSkip("its attention does not go through the attention interface")
    return output


# -- training bugs: the forward is eager's, the training step is not -----------------------------


def norms_frozen(model: Any, inputs: dict[str, Any]) -> Any:
    """Trains with the normalisation layers' scale and shift treated as constants."""
    if not _norms(model):
        raise RunnerSkip("no normalisation layer with a learned scale")
    return eager(model, inputs)


def _train_norms_frozen(model: Any, inputs: dict[str, Any]) -> training.Step:
    step = eager.train(model, inputs)
    norms = {id(m) for m in _norms(model)}
    frozen = {
        f"{name}.{own}".lstrip(".")
        for name, module in model.named_modules()
        if id(module) in norms
        for own, _ in module.named_parameters(recurse=False)
    }
    return training.Step(step.loss, {n: None if n in frozen else g for n, g in step.grads.items()})


norms_frozen.train = _train_norms_frozen


def eval_mode_training(model: Any, inputs: dict[str, Any]) -> Any:
    """Trains with dropout off: the training forward runs in eval mode."""
    if not _drops(model):
        raise RunnerSkip("no dropout to turn off")
    return eager(model, inputs)


def _train_in_eval_mode(model: Any, inputs: dict[str, Any]) -> training.Step:
    copy_ = training.trained_copy(model)
    copy_.train = lambda mode=True: copy_.eval()  # a backend that never switches to training
    return training.gradients(copy_, inputs)


eval_mode_training.train = _train_in_eval_mode


def _map_floats(output: Any, change) -> Any:
    if torch.is_tensor(output):
        return change(output) if output.is_floating_point() else output
    if isinstance(output, dict):
        return {
            k: _map_floats(v, change)
            for k, v in output.items()
            if k not in ("past_key_values", "cache_params")
        }
    if isinstance(output, (tuple, list)):
        mapped = [_map_floats(v, change) for v in output]
        return mapped if isinstance(output, list) else tuple(mapped)
    return output


PLANTED = (
    "no_bias",
    "no_norm_affine",
    "dropout_on",
    "perturbed",
    "bf16_as_fp32",
    "batch_mix_up",
    "no_mask",
    "forgets_cache",
    "wrong_scale",
    "norms_frozen",
    "eval_mode_training",
)
# Bugs of the training step alone: they apply only where eager's training check passed.
TRAINING = ("norms_frozen", "eval_mode_training")
