"""The case: a model of one (model type, head) on one device, with its inputs.

A tiny seeded model with synthetic inputs, or a user's checkpoint loaded from its directory with
text from its own tokenizer. Built here in one place, so every check and runner sees the same
model on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfci.catalog import ModelRecord, resolve_class
from hfci.checkpoints import Checkpoint, checkpoint_tokenizer
from hfci.configs import find_setting, text_config
from hfci.factory import build_model
from hfci.inputs import synthetic_inputs
from hfci.outputs import SEED

__all__ = ["TinyCase", "build_case", "build_checkpoint_case", "parameter_count"]

# What a checkpoint's tokenizer reads for the forward's inputs: plain words, rotated per row so
# the rows of a batch differ, repeated past any sequence length so truncation fills every row.
_TEXT = "the quick brown fox jumps over the lazy dog while a small model reads every word"


def parameter_count(model: Any) -> int:
    """How many numbers the model's parameters hold."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class TinyCase:
    """A built case: the model, its inputs, and what it was built from.

    ``checkpoint`` is set for a user's checkpoint; ``inputs_from`` says where its text came from.
    """

    record: ModelRecord
    head: str
    device: str
    model: Any
    inputs: dict[str, Any]
    checkpoint: Checkpoint | None = None
    inputs_from: str = "synthetic"

    @property
    def parameters(self) -> int:
        return parameter_count(self.model)


def build_case(record: ModelRecord, head: str, device: str = "cpu", seed: int = SEED) -> TinyCase:
    """Model and inputs for one (model type, head) on one device."""
    model = build_model(record, head, device, seed)
    return TinyCase(record, head, device, model, synthetic_inputs(model, record, head, seed))


def build_checkpoint_case(
    checkpoint: Checkpoint, record: ModelRecord, device: str = "cpu", seed: int = SEED
) -> TinyCase:
    """A checkpoint loaded offline in float32 and eval mode on ``device``, with its inputs.

    float32 as the tiny cases are: the eager reference every runner and device is compared with
    is float32 (``--runner bf16`` checks the half-precision side). The inputs are the synthetic
    ones shaped by the checkpoint's own config, with the text replaced by its tokenizer's.
    """
    import torch

    cls = resolve_class(record, checkpoint.class_name)
    model = cls.from_pretrained(checkpoint.path, local_files_only=True, dtype=torch.float32)
    model = model.eval().to(device)
    inputs = synthetic_inputs(model, record, checkpoint.head, seed)
    text, inputs_from = _tokenized(checkpoint, record, model, inputs)
    return TinyCase(record, checkpoint.head, device, model, {**inputs, **text}, checkpoint, inputs_from)


def _tokenized(
    checkpoint: Checkpoint, record: ModelRecord, model: Any, inputs: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The checkpoint tokenizer's ids (and mask) in place of the synthetic ones, where they fit."""
    ids = inputs.get("input_ids")
    # Multimodal input_ids carry placeholder tokens counted from the other inputs: leave them.
    if ids is None or ids.dim() != 2 or record.category != "text":
        return {}, "synthetic"
    try:
        tokenizer = checkpoint_tokenizer(checkpoint)
    except Exception as error:  # the pipeline check loads it again and fails with this error
        return {}, f"synthetic: the checkpoint's tokenizer does not load ({type(error).__name__})"
    if tokenizer is None:
        return {}, "synthetic: the checkpoint has no tokenizer"
    batch, length = ids.shape
    words = _TEXT.split()
    texts = [" ".join((words[i:] + words[:i]) * 4) for i in range(batch)]
    encoded = tokenizer(texts, truncation=True, max_length=length, return_tensors="pt")
    new = encoded["input_ids"]
    vocab = getattr(text_config(model.config), "vocab_size", None) or find_setting(model.config, "vocab_size")
    if tuple(new.shape) != tuple(ids.shape):
        return {}, f"synthetic: the tokenizer gave shape {tuple(new.shape)}, not {tuple(ids.shape)}"
    if isinstance(vocab, int) and int(new.max()) >= vocab:
        # The pipeline check reports this mismatch; the other checks still test the model itself.
        return {}, f"synthetic: the tokenizer gives id {int(new.max())}, past the vocabulary of {vocab}"
    text = {"input_ids": new.to(ids.device)}
    if "attention_mask" in inputs and "attention_mask" in encoded:
        text["attention_mask"] = encoded["attention_mask"].to(ids.device)
    return text, "the checkpoint's tokenizer"
