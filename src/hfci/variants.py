"""Variants: the case's inputs laid out the other ways real serving lays them out.

A padded text batch (one row shortened and padded back, its mask 0 there) and one cached
decoding step (the last token, with the cache a forward over the rest left). The padding check
compares a padded batch with its rows alone; parity compares a runner with eager on each.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hfci.case import TinyCase
from hfci.outputs import seeded_forward, tensors

__all__ = [
    "TEXT_INPUTS",
    "Padded",
    "Variant",
    "decoding_step",
    "extended",
    "forward_rows",
    "padded",
    "padding_sides",
    "parity_variants",
    "text_batch",
]

# What a padded text batch is made of; a case with any other input (images, audio, boxes) keeps
# its own layout, which padding the text alone would break.
TEXT_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids", "use_cache", "decoder_input_ids"})
# Inputs cut with the text when one row is run alone.
_PER_TOKEN = ("input_ids", "attention_mask", "token_type_ids")


def text_batch(inputs: dict[str, Any]) -> str | None:
    """Why a case's inputs are no text batch that can be padded, or None when they are."""
    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    if ids is None or mask is None or ids.dim() != 2 or not set(inputs) <= TEXT_INPUTS:
        return "not a text batch with an attention mask"
    if ids.shape[0] < 2 or ids.shape[1] < 4:
        return f"a batch of {tuple(ids.shape)} has no row to shorten"
    return None


def padding_sides(case: TinyCase) -> list[str]:
    """Right padding for every text batch; left padding too for a causal decoder (a generating
    head, or any head of a decoder-only model type) that takes position ids, so that its
    positions can start at the first real token. Under a causal mask, right padding comes after
    every real token and so cannot show a mask that is ignored; left padding can."""
    sides = ["right"]
    causal = case.record.head(case.head).generative or case.record.family == "decoder-only"
    if causal and not case.model.config.is_encoder_decoder and _takes(case.model, "position_ids"):
        sides.append("left")
    return sides


def _takes(model: Any, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class Padded:
    """A batch whose second row is shortened and padded on ``side``; ``keep`` are its real positions."""

    inputs: dict[str, Any]
    alone: list[dict[str, Any]]
    length: int
    keep: slice
    side: str

    def rows(self, output: Any, alone: Any = None) -> dict[str, Any]:
        """Each row of the padded batch's outputs (``name[row]``), the padded row on its real
        positions: an output with a position per token, where the row alone has one per real
        token (a decoder's outputs of an encoder-decoder keep theirs)."""
        real = {name: t for name, t in tensors(alone)} if alone is not None else {}
        width = self.keep.stop - self.keep.start
        parts = {}
        for name, t in tensors(output):
            if t.dim() == 0 or t.shape[0] != len(self.alone):
                continue
            for index in range(t.shape[0]):
                row = t[index]
                positional = row.dim() >= 1 and row.shape[0] == self.length
                if index == 1 and positional and (name not in real or real[name].shape[1] == width):
                    row = row[self.keep]
                parts[f"{name}[{index}]"] = row
        return parts


def padded(case: TinyCase, side: str) -> Padded:
    """The case's text batch with row 1 a quarter shorter, padded with the pad token on ``side``.

    Padding on the left comes with positions counted from the first real token, as ``generate``
    counts them; the rows alone then count theirs from 0.
    """
    import torch

    ids = case.inputs["input_ids"]
    length = ids.shape[1]
    real = length - max(1, length // 4)
    pad = getattr(case.model.config.get_text_config(decoder=True), "pad_token_id", None)
    pad = pad if isinstance(pad, int) and pad >= 0 else 0
    keep = slice(0, real) if side == "right" else slice(length - real, length)
    gap = slice(real, length) if side == "right" else slice(0, length - real)
    # The shorter row keeps its first and last tokens, as a tokenizer keeps BOS and EOS: heads
    # that pool at the EOS token find it in every row.
    tokens = torch.tensor([*range(real - 1), length - 1])
    short = {k: v[1:2, tokens] for k, v in case.inputs.items() if k in _PER_TOKEN}
    batch = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.inputs.items()}
    for name, value in short.items():
        batch[name][1, keep] = value[0]
    batch["attention_mask"] = torch.ones_like(ids)
    batch["input_ids"][1, gap] = pad
    batch["attention_mask"][1, gap] = 0
    alone = [_row(case.inputs, 0, slice(0, length)), {**_row(case.inputs, 1, slice(0, length)), **short}]
    if side == "left":
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        for row in alone:
            row["position_ids"] = torch.arange(row["input_ids"].shape[1]).unsqueeze(0)
    return Padded(batch, alone, length, keep, side)


def _row(inputs: dict[str, Any], index: int, positions: slice) -> dict[str, Any]:
    """One row of a text batch, cut to ``positions``, as a batch of one."""
    import torch

    out = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            value = value[index : index + 1]
            if name in _PER_TOKEN:
                value = value[:, positions]
        out[name] = value
    return out


def decoding_step(case: TinyCase) -> Callable[[], dict[str, Any]] | None:
    """Inputs of one cached decoding step (the last token, and the cache of a forward over the
    others), made fresh by each call since a forward extends the cache it is given; None where
    the case is no text decoder or its forward leaves no cache."""
    import torch

    head = case.record.head(case.head)
    config = case.model.config
    if not head.generative or config.is_encoder_decoder or text_batch(case.inputs) is not None:
        return None
    prompt = {k: v[:, :-1] if k in _PER_TOKEN else v for k, v in case.inputs.items()}
    try:
        with torch.inference_mode():
            cache = getattr(case.model(**{**prompt, "use_cache": True}), "past_key_values", None)
    except Exception:
        # A forward that cannot start a cache here (a recurrent state of its own) has no step.
        return None
    if cache is None:
        return None
    step = {k: v[:, -1:] if k in ("input_ids", "token_type_ids") else v for k, v in case.inputs.items()}
    return lambda: {**step, "past_key_values": copy.deepcopy(cache), "use_cache": True}


def extended(inputs: dict[str, Any], tokens: Any) -> dict[str, Any]:
    """A text batch with one more token per row: the ids grow by ``tokens``, the per-token
    inputs (mask, token types) by a copy of their last position."""
    import torch

    grown = dict(inputs)
    grown["input_ids"] = torch.cat([inputs["input_ids"], tokens.reshape(-1, 1)], dim=1)
    for name in _PER_TOKEN[1:]:
        if name in inputs:
            grown[name] = torch.cat([inputs[name], inputs[name][:, -1:]], dim=1)
    return grown


@dataclass
class Variant:
    """Inputs to run a runner and eager on (fresh each call), and what of the outputs to compare."""

    label: str
    inputs: Callable[[], dict[str, Any]]
    compared: Callable[[Any], Any]


def parity_variants(case: TinyCase) -> Iterator[Variant]:
    """The case's inputs, then padded batches (right, and left for a decoder) and a cached
    decoding step, where they apply. Made one at a time: a runner that skips the case's own
    inputs pays for no padded batch and no prompt forward."""
    yield Variant("", lambda: case.inputs, lambda output: output)
    if text_batch(case.inputs) is None:
        for side in padding_sides(case):
            batch = padded(case, side)
            yield Variant(f"a {side}-padded batch", lambda b=batch: b.inputs, batch.rows)
    step = decoding_step(case)
    if step is not None:
        # The cache a step returns is left out of the comparison (see hfci.outputs.tensors).
        yield Variant("a cached decoding step", step, lambda output: output)


def forward_rows(case: TinyCase, batch: Padded) -> tuple[Any, list[Any]]:
    """The padded batch's output and each row's alone, from the seeded forward."""
    return seeded_forward(case.model, batch.inputs), [seeded_forward(case.model, row) for row in batch.alone]
