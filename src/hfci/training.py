"""Training: what a head is trained on, and one training step of it.

The labels come from the head's auto mapping (task knowledge, never a model's): a language model
learns its own tokens, a classifier one class per row, a span head a start and an end. The
forward runs in train mode (dropout on) on a copy of the model, so the case's model, whose batch
norms would otherwise update their running statistics, stays the one every other check reads.
"""

from __future__ import annotations

import copy
import inspect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hfci.outputs import SEED

__all__ = [
    "LABEL_KINDS",
    "STEP_SIZES",
    "NoLabels",
    "Step",
    "descent",
    "gradient_gap",
    "gradients",
    "labelled",
    "loss_depends_on",
    "optimizer_step",
    "seed_everything",
    "trained_copy",
    "training_loss",
]


class NoLabels(Exception):
    """The head has no training path hfci knows how to label; the message says why."""


# The loss each head mapping is trained with, by the labels it takes, the first that a head
# serves deciding. A mapping absent here (detection boxes, segmentation masks, keypoints) needs
# targets of its own kind.
LABEL_KINDS: dict[str, str] = {
    "MODEL_FOR_CAUSAL_LM": "tokens",
    "MODEL_FOR_MASKED_LM": "tokens",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT": "tokens",
    "MODEL_FOR_MULTIMODAL_LM": "tokens",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM": "decoder tokens",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ": "decoder tokens",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION": "class",
    "MODEL_FOR_IMAGE_CLASSIFICATION": "class",
    "MODEL_FOR_AUDIO_CLASSIFICATION": "class",
    "MODEL_FOR_VIDEO_CLASSIFICATION": "class",
    "MODEL_FOR_MULTIPLE_CHOICE": "class",
    "MODEL_FOR_TOKEN_CLASSIFICATION": "token class",
    "MODEL_FOR_NEXT_SENTENCE_PREDICTION": "sentence pair",
    "MODEL_FOR_QUESTION_ANSWERING": "span",
    "MODEL_FOR_CTC": "transcript",
    # Last: a pre-training class may serve a task above too (T5's is its seq2seq head).
    "MODEL_FOR_PRETRAINING": "tokens",
}

# Each kind's loss arguments: a head whose forward takes none of them computes no loss.
_ARGUMENTS = {"span": ("start_positions", "end_positions"), "sentence pair": ("labels",)}
# Pre-training heads add sentence-level objectives (next sentence, sentence order, sentence and
# image) whose labels are named so; each is a class of two, given alongside the tokens.
_SENTENCE = "sentence"
_LABEL_SUFFIXES = ("_label", "_labels")
# Labels outside the vocabulary's range are ignored by every transformers loss.
_IGNORE = -100


def seed_everything(seed: int = SEED) -> None:
    """Seed torch, numpy and random: training-mode forwards draw from all three (dropout,
    SpecAugment's time masks), and two forwards compared must draw the same."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _kind(mappings: tuple[str, ...]) -> str:
    for mapping, kind in LABEL_KINDS.items():
        if mapping in mappings:
            return kind
    raise NoLabels(f"no label recipe for the head's mappings ({', '.join(mappings) or 'none'})")


def _parameters(model: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}


def _takes(model: Any, names: tuple[str, ...]) -> bool:
    parameters = _parameters(model)
    return all(n in parameters for n in names) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _setting(config: Any, name: str) -> Any:
    """A field of the config, or of its decoder's config where the top level has none."""
    value = getattr(config, name, None)
    if value is None:
        value = getattr(config.get_text_config(decoder=True), name, None)
    return value


def _vocab(config: Any) -> int | None:
    vocab = getattr(config.get_text_config(decoder=True), "vocab_size", None)
    return vocab if isinstance(vocab, int) else None


def _token_labels(ids: Any, vocab: int | None) -> Any:
    """The ids themselves, placeholders past the text vocabulary (an image's tokens) ignored."""
    labels = ids.clone()
    if vocab is not None:
        labels[labels >= vocab] = _IGNORE
    return labels


def labelled(model: Any, mappings: tuple[str, ...], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs with the labels the head's loss takes, or ``NoLabels`` saying why there are none."""
    import torch

    kind = _kind(mappings)
    if kind == "tokens" and getattr(model.config, "is_encoder_decoder", False):
        # An image-text-to-text head that is an encoder-decoder (Florence-2) learns its decoder's.
        kind = "decoder tokens"
    names = _ARGUMENTS.get(kind, ("labels",))
    if not _takes(model, names):
        raise NoLabels(f"{type(model).__name__}.forward takes no {' or '.join(names)}")
    config = model.config
    ids = inputs.get("input_ids")
    batch = _batch(inputs)
    if kind == "tokens":
        if ids is None or ids.dim() != 2:
            raise NoLabels("the head reads no 2-d input_ids to learn")
        labels = {"labels": _token_labels(ids, _vocab(config))}
        for name in _parameters(model):
            if _SENTENCE in name and name.endswith(_LABEL_SUFFIXES) and name not in inputs:
                labels[name] = torch.arange(batch, device=ids.device) % 2
        return {**inputs, **labels}
    if kind == "sentence pair":
        return {**inputs, "labels": torch.arange(batch, device=_device(inputs)) % 2}
    if kind == "decoder tokens":
        decoder = inputs.get("decoder_input_ids")
        target = decoder if decoder is not None else ids
        if target is None or target.dim() != 2:
            raise NoLabels("the head reads no 2-d decoder ids to learn")
        if isinstance(_setting(config, "decoder_start_token_id"), int):
            # With labels, the decoder shifts them right itself, from its start token: the
            # path training takes. A config without a start token cannot; it keeps its ids.
            inputs = {k: v for k, v in inputs.items() if not k.startswith("decoder_")}
        return {**inputs, "labels": _token_labels(target, _vocab(config))}
    if kind == "class":
        classes = _classes(model, inputs)
        return {**inputs, "labels": torch.arange(batch, device=_device(inputs)) % classes}
    if kind == "token class":
        if ids is None or ids.dim() != 2:
            raise NoLabels("token classification reads no 2-d input_ids")
        labels = torch.arange(ids.numel(), device=ids.device).reshape(ids.shape) % config.num_labels
        return {**inputs, "labels": labels}
    if kind == "span":
        if ids is None or ids.dim() != 2:
            raise NoLabels("question answering reads no 2-d input_ids")
        length = ids.shape[1]
        start = torch.arange(batch, device=ids.device) % length
        return {**inputs, "start_positions": start, "end_positions": (start + 1).clamp(max=length - 1)}
    # A transcript of two characters: short enough for any output length CTC can align, and
    # never the blank (the pad token), which CTC cannot emit as a label.
    vocab = _vocab(config) or 2
    blank = getattr(config, "pad_token_id", 0) or 0
    symbols = [s for s in range(1, vocab) if s != blank][:2] or [1]
    labels = torch.tensor([symbols] * batch, device=_device(inputs))
    return {**inputs, **_frames_mask(model, inputs), "labels": labels}


def _frames_mask(model: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A mask of ones over the audio's frames, for a CTC head that counts its input lengths
    from the mask (and has none among the inference inputs): ``attention_mask``, or
    ``padding_mask`` (OmniASR) where the forward takes that instead."""
    import torch

    parameters = _parameters(model)
    name = next((n for n in ("attention_mask", "padding_mask") if n in parameters), None)
    if name is None or name in inputs:
        return {}
    if "input_values" in inputs:
        # A waveform's mask covers its samples, whether or not a channel axis comes first.
        main = inputs["input_values"]
        shape = (main.shape[0], main.shape[-1])
    elif "input_features" in inputs:
        main = inputs["input_features"]
        shape = tuple(main.shape[:2])
    else:
        return {}
    return {name: torch.ones(shape, dtype=torch.long, device=main.device)}


def _batch(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        if hasattr(value, "shape") and len(value.shape):
            return int(value.shape[0])
    raise NoLabels("no tensor input to count the batch from")


def _device(inputs: Mapping[str, Any]) -> Any:
    return next(v.device for v in inputs.values() if hasattr(v, "device"))


def _classes(model: Any, inputs: Mapping[str, Any]) -> int:
    """How many classes a row's label ranges over: the choices of a multiple-choice head, else
    the config's labels."""
    ids = inputs.get("input_ids")
    if ids is not None and ids.dim() == 3:
        return int(ids.shape[1])
    return max(int(getattr(model.config, "num_labels", 2)), 1)


@dataclass
class Step:
    """One training forward: its loss and the gradient of every trainable parameter by name
    (None where the loss does not reach it)."""

    loss: Any
    grads: dict[str, Any] = field(default_factory=dict)


Forward = Callable[[Any, dict[str, Any]], Any]


def _call(model: Any, inputs: dict[str, Any]) -> Any:
    return model(**inputs)


def gradients(model: Any, inputs: dict[str, Any], forward: Forward = _call) -> Step:
    """The loss of one seeded train-mode forward (``forward(model, inputs)``, the model's own by
    default) and the gradients ``backward`` leaves on the parameters, as an optimizer reads them:
    reversible layers (Reformer's) compute theirs inside their own backward, which
    ``autograd.grad`` would not see. The caller passes a copy: the gradients stay on it, and
    train mode may update buffers."""
    import torch

    model.train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for _, parameter in trainable:
        parameter.grad = None
    seed_everything()
    with torch.enable_grad():
        output = forward(model, inputs)
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if not isinstance(loss, torch.Tensor):
            raise NoLabels(f"{type(model).__name__} returns no loss for the labels it was given")
        if loss.dim():
            loss = loss.mean()  # some heads return one loss per row
        loss.backward()
    grads = {n: None if p.grad is None else p.grad.detach().clone() for n, p in trainable}
    for _, parameter in trainable:
        parameter.grad = None
    return Step(loss.detach(), grads)


def gradient_gap(reference: Step, other: Step, floor: float) -> tuple[float, str]:
    """The largest difference between two training steps, and where: the loss's relative to
    itself, each gradient's relative to its largest magnitude but never to less than ``floor``
    times the largest gradient of the model (a gradient zero in exact arithmetic, a key's bias,
    is rounding alone). Parameters the reference does not reach, or ``other`` lacks, are left
    to the caller."""
    ref_loss, other_loss = float(reference.loss), float(other.loss)
    worst = (abs(ref_loss - other_loss) / (abs(ref_loss) or 1.0), "loss")
    reached = {n: g for n, g in reference.grads.items() if g is not None and g.numel()}
    largest = max((float(g.abs().max()) for g in reached.values()), default=0.0)
    for name, grad in reached.items():
        theirs = other.grads.get(name)
        if theirs is None or theirs.shape != grad.shape:
            continue
        scale = max(float(grad.abs().max()), floor * largest) or 1.0
        gap = float((grad.float() - theirs.float().to(grad.device)).abs().max()) / scale
        worst = max(worst, (gap, f"grad {name}"))
    return worst


def training_loss(model: Any, inputs: dict[str, Any]) -> float:
    """The loss of one seeded train-mode forward, without gradients."""
    import torch

    model.train()
    seed_everything()
    with torch.no_grad():
        loss = model(**inputs).loss
    return float(loss.mean())


# How far a parameter whose gradient is all zeros is moved along a seeded direction, relative to
# its RMS, to see whether the loss depends on it; and the relative change of a float32 loss that
# could be rounding alone (a few units in the last place; the fourfold test guards it further).
PROBE = 0.1
ROUNDING = 1e-6


def _central_difference(model: Any, inputs: dict[str, Any], names: list[str], scale: float) -> float:
    """Half of L(p + d) - L(p - d) for parameters ``names`` moved together along a seeded
    direction ``d`` of ``scale`` times each one's RMS."""
    import torch

    losses = []
    for sign in (1, -1):
        probe = copy.deepcopy(model)
        parameters = dict(probe.named_parameters())
        generator = torch.Generator(device="cpu").manual_seed(SEED)
        for name in names:
            parameter = parameters[name]
            noise = torch.randn(parameter.shape, generator=generator).to(parameter.device, parameter.dtype)
            owner = probe.get_submodule(name.rpartition(".")[0])
            padding = getattr(owner, "padding_idx", None)
            if isinstance(owner, torch.nn.Embedding) and padding is not None:
                # An embedding's padding row gets no gradient by design, read or not: it stays put.
                noise[padding] = 0
            with torch.no_grad():
                rms = parameter.float().pow(2).mean().sqrt().item() or 0.02
                parameter.add_(noise * sign * scale * rms)
        losses.append(training_loss(probe, inputs))
    return (losses[0] - losses[1]) / 2


def loss_depends_on(model: Any, inputs: dict[str, Any], names: list[str], loss: float) -> bool:
    """Whether the loss depends on parameters ``names`` (moved together: one probe clears many)
    to first order, as a gradient measures: the central difference is above rounding and
    shrinks fourfold with a step four times shorter, as a derivative's does.

    A gradient of exact zeros is right where the loss does not depend on the parameter (a bias
    added to every choice before a softmax over them), only on entries that get none by design
    (an embedding's padding row, left still here), or only in steps (which expert a router
    picks, where its estimator gives no gradient without a close second: PhiMoE's sparsemixer):
    a step function's difference does not shrink with the step, it vanishes or stays.
    """
    long = _central_difference(model, inputs, names, PROBE)
    if abs(long) <= ROUNDING * max(abs(loss), 1.0):
        return False
    short = _central_difference(model, inputs, names, PROBE / 4)
    return 2 <= long / short <= 8 if short else False


def optimizer_step(model: Any, step: Step, size: float = 1e-3) -> None:
    """One SGD step along ``step``'s gradients, the whole update ``size`` times the parameters'
    norm long: small enough that the loss's first-order decrease dominates, large enough to
    show above float32 rounding."""
    import torch

    named = dict(model.named_parameters())
    pairs = [(named[n], g) for n, g in step.grads.items() if g is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack([g.float().norm() for _, g in pairs]))
    param_norm = torch.linalg.vector_norm(torch.stack([p.detach().float().norm() for p, _ in pairs]))
    for parameter, grad in pairs:
        parameter.grad = grad
    lr = float(size * param_norm / grad_norm) if grad_norm > 0 else 0.0
    optimizer = torch.optim.SGD([p for p, _ in pairs], lr=lr)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# Step lengths tried, largest first, relative to the parameters' norm: the loss of a right
# gradient falls for every step short enough, whatever the curvature (a batch norm's scale
# invariance makes some tiny models' losses curve sharply); a wrong one rises for all of them.
STEP_SIZES = (1e-3, 1e-4, 1e-5)


def descent(model: Any, inputs: dict[str, Any], step: Step, loss: float) -> tuple[float, float]:
    """(step length, loss after it) of the first of ``STEP_SIZES`` that lowers the loss, or of
    the last one tried where none does."""
    for size in STEP_SIZES:
        moved = copy.deepcopy(model)
        optimizer_step(moved, step, size)
        after = training_loss(moved, inputs)
        if after < loss:
            break
    return size, after


def trained_copy(model: Any) -> Any:
    """A copy of the model to train: the case's model stays as every other check reads it."""
    return copy.deepcopy(model)
