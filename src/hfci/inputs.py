"""Inputs: synthetic, seeded inputs for a built tiny model, shaped from what the model reads.

The forward's signature, its docstring shapes and the config say what each input is; the
multimodal placeholders (one token per image, video or audio feature) are counted from the
model's own feature methods. What introspection cannot derive comes from ``data/models.toml``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hfci import data
from hfci.catalog import Head, ModelRecord, load_catalog
from hfci.configs import find_setting, int_list, special_token_ids, text_config
from hfci.factory import FactoryError
from hfci.outputs import SEED

__all__ = ["AUDIO_SAMPLES", "BATCH", "SEQ_LEN", "main_input", "synthetic_inputs"]

BATCH = 2
SEQ_LEN = 8
AUDIO_SAMPLES = 1600


def _wrapped(model: Any) -> Any:
    """The base model a head wraps: its ``model`` attribute, else the one its base_model_prefix names
    (retrieval heads keep their vision-language model as ``vlm``), or None."""
    for name in ("model", getattr(model, "base_model_prefix", None)):
        inner = getattr(model, name, None) if isinstance(name, str) and name else None
        if inner is not None and inner is not model and hasattr(inner, "config"):
            return inner
    return None


def _source(*objects: Any) -> str:
    """The source code of the classes and functions given, those that have one, joined."""
    found = []
    for obj in objects:
        with contextlib.suppress(OSError, TypeError):
            found.append(inspect.getsource(obj))
    return "\n".join(found)


def _image_stacks(model: Any) -> bool:
    """Whether the model (or the base model it wraps) unpacks its images as (batch, num_images, ...)."""
    wrapped = _wrapped(model)
    source = _source(type(model), *([type(wrapped)] if wrapped is not None else []))
    # Unpacked by name, or folded into the batch (IDEFICS from transformers 5.24 on).
    pattern = r"\w+, num_images\b[^=\n]*= pixel_values\.shape|pixel_values = pixel_values\.flatten\(0, 1\)"
    return re.search(pattern, source) is not None


def _unpads_patch_rows(model: Any) -> bool:
    """Whether the model reads its patch rows padded per sample, (batch, rows, dim), and drops the
    padding by each image's grid (ColQwen2, as its processor pads them) before its vision tower."""
    source = _source(type(model).forward)
    return "arange(pixel_values.shape[1]" in source and "pixel_values = pixel_values[mask]" in source


def _size(value: Any, default: int) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, dict) and "height" in value:
        return int(value["height"]), int(value["width"])
    return default, default


def _required(params: Any) -> set[str]:
    return {
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


# Placeholder tokens in the text that a multimodal model replaces by the features of one
# modality: (token id fields, feature method, the inputs that method reads).
_PLACEHOLDERS = (
    (
        ("image_token_id", "image_token_index"),
        "get_image_features",
        "pixel_values",
        ("image_", "images_", "pixel_", "spatial_"),
    ),
    (("video_token_id", "video_token_index"), "get_video_features", "pixel_values_videos", ("video_",)),
    (("audio_token_id", "audio_token_index"), "get_audio_features", "input_features", ("audio_", "feature_")),
)


def _feature_method(model: Any, method: str, base: Any = None) -> Any:
    """The model's feature method (``get_image_features``, ...), or its base model's, or None."""
    found = [getattr(model, method, None), getattr(_wrapped(model), method, None)]
    if not any(found) and base is not None:
        # A head without the feature method (and no ``model`` attribute): ask its base model.
        found.append(getattr(base(), method, None))
    found = [f for f in found if f is not None]
    # A head's method that only forwards ``*args, **kwargs`` hides the names its base model reads.
    named = [f for f in found if _named(f)]
    return (named or found or [None])[0]


def _named(function: Any) -> bool:
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return any(p.kind not in kinds for p in inspect.signature(function).parameters.values())


def _feature_method_requires(model: Any, method: str, name: str) -> bool:
    function = _feature_method(model, method)
    try:
        return function is not None and name in _required(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return False


def _feature_rows(
    model: Any,
    method: str,
    inputs: dict[str, Any],
    main: str,
    prefixes: tuple[str, ...],
    base: Any = None,
) -> int | None:
    """How many embedding rows the model's ``method`` yields for these inputs (None if unknown)."""
    import torch

    function = _feature_method(model, method, base)
    if function is None or main not in inputs:
        return None
    accepted = inspect.signature(function).parameters
    needed = _required(accepted)
    kwargs = {
        k: v
        for k, v in inputs.items()
        if k == main or (k in accepted and (k.startswith(prefixes) or k in needed))
    }
    attempts = [kwargs]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        # A head's method that passes its keyword arguments on to the base model's may need more.
        attempts.append({k: v for k, v in inputs.items() if k == main or k.startswith(prefixes)})
    output = None
    for attempt in attempts:
        try:
            with torch.no_grad():
                output = function(**attempt)
            break
        except Exception:
            continue
    if output is None:
        return None
    found = _flat_tensors(_features_of(output))
    width = _text_width(function, model)
    if not found or not width:
        return None
    total = sum(t.numel() for t in found)
    return total // width if total % width == 0 else None


def _features_of(output: Any) -> Any:
    """The features in a feature method's output: its pooled, else last hidden states."""
    if not hasattr(output, "keys"):
        return output
    pooled = output.get("pooler_output") if "pooler_output" in output else None
    # Without pooled or last hidden states, the first field that is not the tower's own
    # hidden states or attentions holds the features.
    own = [v for k, v in output.items() if k not in ("hidden_states", "attentions")]
    fallback = own[0] if own else output.to_tuple()[0]
    output = pooled if pooled is not None else output.get("last_hidden_state", fallback)
    if _layer_pairs(output):
        # Features injected at several text layers ((layer, features) pairs, deepstack):
        # the first layer's features fill the placeholders.
        output = output[0][1]
    return output


def _text_width(function: Any, model: Any) -> int | None:
    """The width of the text the features replace, from the model that owns the feature method."""
    owner = getattr(getattr(function, "__self__", None), "config", None) or model.config
    return getattr(text_config(owner), "hidden_size", None) or getattr(
        text_config(model.config), "hidden_size", None
    )


def _layer_pairs(value: Any) -> bool:
    """Whether ``value`` is a list of (text layer index, features) pairs."""
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], int) for v in value)
    )


def _flat_tensors(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_tensors(v)]
    return []


def _patch_grid(config: Any, batch: int, generator: Any) -> tuple[Any, Any]:
    """Flattened patches and their (t, h, w) grid, for models that take images as patch rows."""
    import torch

    patch = find_setting(config, "patch_size", default=2)
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    temporal = find_setting(config, "temporal_patch_size", "patch_temporal", default=1) or 1
    temporal = temporal[0] if isinstance(temporal, (list, tuple)) else temporal
    merge = find_setting(config, "spatial_merge_size", "merge_size", "merge_kernel_size", default=1) or 1
    merge = merge[0] if isinstance(merge, (list, tuple)) else merge
    channels = find_setting(config, "in_channels", "num_channels", "in_chans", default=3)
    side = 2 * merge
    grid = torch.tensor([[1, side, side]] * batch)
    rows = batch * side * side
    return torch.rand(rows, channels * temporal * patch * patch, generator=generator), grid


def _flex_patches(config: Any, batch: int, height: int, width: int, generator: Any) -> dict[str, Any]:
    """Rows of flattened patches with their mask and (rows, columns) grid, per image."""
    import torch

    patch = find_setting(config, "patch_size", default=16)
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    channels = find_setting(config, "num_channels", "in_channels", default=3)
    rows, columns = max(1, height // patch), max(1, width // patch)
    return {
        "pixel_values": torch.rand(batch, rows * columns, channels * patch * patch, generator=generator),
        "pixel_attention_mask": torch.ones(batch, rows * columns, dtype=torch.long),
        "spatial_shapes": torch.tensor([[rows, columns]] * batch),
    }


def main_input(model: Any, default: str = "input_ids") -> str:
    """The model's main input name; of several (images and a task description), the first."""
    main = getattr(model, "main_input_name", default)
    if isinstance(main, (list, tuple)):
        return main[0] if main else default
    return main


def synthetic_inputs(
    model: Any, record: ModelRecord, head: str | None = None, seed: int = SEED
) -> dict[str, Any]:
    """Inputs for ``model.forward`` shaped by its signature and config (on the model's device).

    ``head`` names the case's head, for the models.toml input hints given to some heads only
    and for multiple choice; without it, every hint applies. Every random input is drawn from
    one generator seeded with ``seed``, modality by modality in a fixed order.
    """
    plan = _plan(model, record, head, seed)
    inputs: dict[str, Any] = {}
    for builder in _BUILDERS:
        inputs.update(builder(plan))
    _pair_keypoint_images(plan, inputs)
    _fit_text_to_head(plan, inputs)
    inputs.update(_masks_and_flags(plan, inputs))
    inputs.update(_documented_main(plan, inputs))
    _require_main(plan, inputs)
    device = next((p.device for p in model.parameters()), "cpu")
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}


@dataclass(frozen=True)
class _Plan:
    """What the input builders of one model read: the model, its forward, its hints, the draws."""

    model: Any
    record: ModelRecord
    head: Head | None
    hints: dict[str, Any]
    params: Mapping[str, inspect.Parameter]
    required: set[str]
    main: str
    batch: int
    seq_len: int
    generator: Any
    # Token ids the config reserves (random text avoids them).
    reserved: set[int]
    # A contrastive model (logits_per_text against logits_per_image/audio/...) compares both
    # modalities in one forward: each of them needs its input, whichever is the main one.
    contrastive: set[str]
    # The text decoder's config, and the vocabulary the text ids index.
    text: Any
    vocab: int

    @property
    def config(self) -> Any:
        return self.model.config

    def wants(self, name: str) -> bool:
        """Whether the forward takes ``name`` and needs it: its main input, required, or contrastive."""
        return name in self.params and (self.main == name or name in self.required or bool(self.contrastive))

    def token_ids(self, vocab: int, length: int) -> Any:
        """(batch, length) random ids below ``vocab``, clear of the special tokens."""
        import torch

        # Skip the lowest ids, where special tokens usually live, and every reserved id.
        low = min(4, max(vocab - 1, 0))
        out = torch.randint(low, max(vocab, low + 1), (self.batch, length), generator=self.generator)
        free = [i for i in range(low, vocab) if i not in self.reserved] or [low]
        for token in self.reserved:
            out[out == token] = free[token % len(free)]
        return out

    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images: the hint's, else the config's, else 32."""
        return _size(self.hints.get("image_size", find_setting(self.config, "image_size", "input_size")), 32)

    def sighted(self) -> bool:
        """Whether the model reads images: one built without its optional vision tower
        (vision_config None) reads none, unless its forward requires them."""
        return getattr(self.config, "vision_config", True) is not None or "pixel_values" in self.required


def _plan(model: Any, record: ModelRecord, head: str | None, seed: int) -> _Plan:
    """The plan of one model's inputs, from its forward's signature, its config and its hints."""
    import torch

    config = model.config
    hints = data.model_entry(record.model_type).get("inputs", {})
    params = inspect.signature(model.forward).parameters
    text = text_config(config)
    return _Plan(
        model=model,
        record=record,
        head=record.head(head) if head else None,
        hints=hints,
        params=params,
        required=_required(params),
        main=_forward_main(model, params),
        batch=hints.get("batch", BATCH),
        seq_len=hints.get("seq_len", SEQ_LEN),
        generator=torch.Generator().manual_seed(seed),
        reserved=special_token_ids(config),
        contrastive=_contrastive_logits(model),
        text=text,
        vocab=getattr(text, "vocab_size", None) or find_setting(config, "vocab_size", default=99),
    )


def _forward_main(model: Any, params: Mapping[str, inspect.Parameter]) -> str:
    """The main input the forward takes: the model's, else the forward's first parameter.

    A main input name can be inherited from a shared base class whose forward takes it while
    this one does not.
    """
    main = main_input(model)
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if main not in params and named:
        main = named[0]
    return main


# -- one builder per modality, called in this order (the order of the random draws) -------------


def _text_inputs(plan: _Plan) -> dict[str, Any]:
    """The text ids, and the ids of any second tokenizer the forward requires."""
    out: dict[str, Any] = {}
    prompted = plan.record.category == "vision" and getattr(plan.config, "text_config", None) is not None
    if plan.wants("input_ids") or (
        # Vision models with a text tower (open-vocabulary segmenters) read a text prompt too.
        "input_ids" in plan.params and (plan.record.category in ("text", "multimodal") or prompted)
    ):
        out["input_ids"] = _prompt_ids(plan)
    for name in sorted(plan.required):
        if name.endswith("_input_ids") and name not in out:
            # A second tokenizer's ids (a Q-Former's, a prompt encoder's) index its own vocabulary.
            sub = getattr(plan.config, name.removesuffix("_input_ids") + "_config", None)
            out[name] = plan.token_ids(getattr(sub, "vocab_size", None) or plan.vocab, plan.seq_len)
    return out


def _prompt_ids(plan: _Plan) -> Any:
    """Random text ids ending with the end-of-sequence token where the config has a usable one."""
    ids = plan.token_ids(plan.vocab, plan.seq_len)
    eos = getattr(plan.text, "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list) and eos else eos
    placeholders = {getattr(plan.config, k, None) for keys, *_ in _PLACEHOLDERS for k in keys}
    if (
        isinstance(eos, int)
        and 0 <= eos < plan.vocab
        and eos != getattr(plan.text, "pad_token_id", None)
        and eos not in placeholders
    ):
        # Sequence classification of encoder-decoders reads the last end-of-sequence token.
        ids[:, -1] = eos
    return ids


def _pixel_inputs(plan: _Plan) -> dict[str, Any]:
    """Images in the layout the model reads: patch rows with their grid, NaFlex patches, or pixels."""
    grid_key = next((k for k in ("image_grid_thw", "grid_thw") if k in plan.params), None)
    # A vision tower that requires its patch rows and their grid takes them whatever its category.
    patch_rows = next((k for k in ("pixel_values", "hidden_states") if k in plan.required), None)
    grid_required = grid_key in plan.required and patch_rows is not None
    if plan.sighted() and (
        plan.wants("pixel_values")
        or (
            "pixel_values" in plan.params
            and (plan.record.category in ("vision", "multimodal") or grid_required)
        )
    ):
        if grid_key:
            pixels, grid = _patch_grid(plan.config, plan.batch, plan.generator)
            if _unpads_patch_rows(plan.model):
                pixels = pixels.reshape(plan.batch, -1, pixels.shape[-1])
            return {"pixel_values": pixels, grid_key: grid}
        if "spatial_shapes" in plan.params:
            # Native-resolution (NaFlex) encoders read flattened patches, their mask and grid.
            return _flex_patches(plan.config, plan.batch, *plan.image_size(), plan.generator)
        return _image_inputs(plan)
    if grid_key and "hidden_states" in plan.params and (plan.main == "hidden_states" or grid_required):
        rows, grid = _patch_grid(plan.config, plan.batch, plan.generator)
        return {"hidden_states": rows, grid_key: grid}
    return {}


def _image_inputs(plan: _Plan) -> dict[str, Any]:
    """Pixel values (batch, channels, h, w) or the stacked layout the model unpacks, with the
    image sizes any-resolution and variable-resolution models read."""
    channels = find_setting(plan.config, "num_channels", "in_channels", "input_channels", default=3)
    height, width = plan.image_size()
    out = {"pixel_values": _image_tensor(plan, channels, height, width)}
    out.update(_image_sizes(plan, channels, height, width))
    return out


def _image_tensor(plan: _Plan, channels: int, height: int, width: int) -> Any:
    """Images, as single images, image stacks or video clips."""
    import torch

    pixels = torch.rand(plan.batch, channels, height, width, generator=plan.generator)
    if _image_stacks(plan.model):
        # Models that read several images per sample: (batch, images, channels, h, w).
        pixels = pixels.unsqueeze(1)
    if plan.record.family == "video-encoder" or "logits_per_video" in plan.contrastive:
        # Video encoders read their clip through pixel_values: (batch, frames, c, h, w).
        frames = plan.hints.get("frames") or find_setting(
            plan.config, "num_frames", "frames_per_clip", default=2
        )
        pixels = torch.rand(plan.batch, frames, channels, height, width, generator=plan.generator)
    return pixels


def _image_sizes(plan: _Plan, channels: int, height: int, width: int) -> dict[str, Any]:
    """Each image's size, for the models that read it (any-resolution patches replace the pixels)."""
    import torch

    if "image_sizes" not in plan.params:
        return {}
    sizes = torch.tensor([[height, width]] * plan.batch)
    grid = getattr(plan.config, "image_grid_pinpoints", None)
    if isinstance(grid, list) and grid:
        # Any-resolution models read (batch, patches, channels, h, w) and each image's size;
        # they keep as many patches as the best-fitting grid needs: give the most any needs.
        patches = 1 + max(math.ceil(h / height) * math.ceil(w / width) for h, w in grid)
        pixels = torch.rand(plan.batch, patches, channels, height, width, generator=plan.generator)
        return {"pixel_values": pixels, "image_sizes": sizes}
    if _feature_method_requires(plan.model, "get_image_features", "image_sizes"):
        # Variable-resolution towers (Pixtral) read each image's size to cut its patches.
        return {"image_sizes": sizes}
    return {}


def _video_inputs(plan: _Plan) -> dict[str, Any]:
    """Video clips: patch rows with their grid, or (batch, frames, channels, h, w)."""
    import torch

    if not (plan.sighted() and plan.wants("pixel_values_videos")):
        return {}
    if "video_grid_thw" in plan.params:
        rows, grid = _patch_grid(plan.config, plan.batch, plan.generator)
        return {"pixel_values_videos": rows, "video_grid_thw": grid}
    channels = find_setting(plan.config, "num_channels", "in_channels", default=3)
    height, width = plan.image_size()
    frames = plan.hints.get("frames") or find_setting(plan.config, "num_frames", "frames_per_clip", default=2)
    frames = min(frames, 8)
    clips = torch.rand(plan.batch, frames, channels, height, width, generator=plan.generator)
    return {"pixel_values_videos": clips}


def _waveform_inputs(plan: _Plan) -> dict[str, Any]:
    """Raw audio (``input_values``), in the layout the model reads."""
    import torch

    if not plan.wants("input_values"):
        return {}
    config = plan.config
    samples = plan.hints.get("audio_samples", _audio_samples(config))
    channels = find_setting(config, "audio_channels", default=1)
    documented = _documented_shape(plan.model, "input_values")
    sized = [find_setting(config, name) for name in documented[1:]]
    if len(documented) == 3 and all(isinstance(v, int) and v > 0 for v in sized):
        # Spectrogram transformers read (batch, frames, bins) sized by their config.
        shape = (plan.batch, *sized)
    elif (
        channels > 1
        or len(documented) == 3
        or _unpacks_channels(plan.model)
        or _extracted_rank(_feature_extractor(plan.record)) == 3
    ):
        shape = (plan.batch, channels, samples)
    else:
        shape = (plan.batch, samples)
    return {"input_values": torch.randn(*shape, generator=plan.generator)}


def _spectrogram_inputs(plan: _Plan) -> dict[str, Any]:
    """Audio features (``input_features``, mel bins by frames) and the masks the forward requires."""
    import torch

    if not plan.wants("input_features"):
        return {}
    config, batch = plan.config, plan.batch
    # The width the encoder's feature projection reads comes first: where mel bins are stacked
    # (Seamless and wav2vec2-BERT read 2 x 80 = 160), it alone is right.
    bins = find_setting(
        config,
        "feature_projection_input_dim",
        "num_mel_bins",
        "feature_size",
        "input_feat_per_channel",
        default=16,
    )
    frames = plan.hints.get("frames") or 2 * (find_setting(config, "max_source_positions", default=32) or 32)
    if _frames_first(plan.record.processors.get("feature_extractor")):
        features = torch.randn(batch, frames, bins, generator=plan.generator)
    else:
        features = torch.randn(batch, bins, frames, generator=plan.generator)
    out = {"input_features": features}
    for name in ("input_features_mask", "feature_attention_mask"):
        if name in plan.required:
            out[name] = torch.ones((batch, frames), dtype=torch.long)
    return out


def _time_series_inputs(plan: _Plan) -> dict[str, Any]:
    """Past (and future) values, time features and observed masks sized by the config."""
    import torch

    config, params, batch, generator = plan.config, plan.params, plan.batch, plan.generator
    if "past_values" not in params or not ("past_values" in plan.required or plan.main == "past_values"):
        return {}
    context = getattr(config, "context_length", None) or 16
    lags = getattr(config, "lags_sequence", None) or [0]
    length = context + max(lags)
    channels = getattr(config, "num_input_channels", None) or getattr(config, "input_size", None) or 1
    shape = (
        (batch, length, channels)
        if channels > 1 or hasattr(config, "num_input_channels")
        else (batch, length)
    )
    out = {"past_values": torch.randn(*shape, generator=generator)}
    time_features = getattr(config, "num_time_features", None)
    if "past_time_features" in params and time_features is not None:
        out["past_time_features"] = torch.randn(batch, length, time_features, generator=generator)
    if "past_observed_mask" in params:
        out["past_observed_mask"] = torch.ones(shape)
    if "past_values_padding" in params:
        out["past_values_padding"] = torch.zeros(batch, length, dtype=torch.long)
    if "freq" in params:
        out["freq"] = torch.zeros(batch, dtype=torch.long)
    horizon = getattr(config, "prediction_length", None)
    if getattr(config, "is_encoder_decoder", False) and horizon and "future_values" in params:
        future = (batch, horizon, *shape[2:])
        out["future_values"] = torch.randn(*future, generator=generator)
        if "future_time_features" in params and time_features is not None:
            out["future_time_features"] = torch.randn(batch, horizon, time_features, generator=generator)
    return out


def _decoder_inputs(plan: _Plan) -> dict[str, Any]:
    """Decoder ids for encoder-decoders (and forwards that require them)."""
    if "decoder_input_ids" in plan.params and (
        getattr(plan.config, "is_encoder_decoder", False) or "decoder_input_ids" in plan.required
    ):
        decoder_vocab = find_setting(plan.config, "decoder_vocab_size", default=None) or plan.vocab
        return {"decoder_input_ids": plan.token_ids(decoder_vocab, plan.seq_len)}
    return {}


def _hinted_tensors(plan: _Plan) -> dict[str, Any]:
    """The tensors models.toml describes for inputs no introspection can shape."""
    head = plan.head
    # One hint serves every head of the type (or the heads it names) that takes the input.
    return {
        name: _tensor_from_hint(value, plan.generator)
        for name, value in plan.hints.get("tensors", {}).items()
        if name in plan.params and (head is None or head.name in value.get("heads", [head.name]))
    }


_BUILDERS: tuple[Callable[[_Plan], dict[str, Any]], ...] = (
    _text_inputs,
    _pixel_inputs,
    _video_inputs,
    _waveform_inputs,
    _spectrogram_inputs,
    _time_series_inputs,
    _decoder_inputs,
    _hinted_tensors,
)


# -- what follows reshapes or completes the drawn inputs -------------------------------------


def _pair_keypoint_images(plan: _Plan, inputs: dict[str, Any]) -> None:
    """Keypoint matchers (and their base models) read image pairs: (batch, 2, c, h, w)."""
    import torch

    matcher = any("MODEL_FOR_KEYPOINT_MATCHING" in h.mappings for h in plan.record.heads)
    if matcher and "pixel_values" in inputs and inputs["pixel_values"].dim() == 4:
        inputs["pixel_values"] = torch.stack([inputs["pixel_values"], inputs["pixel_values"].flip(-1)], dim=1)


def _fit_text_to_head(plan: _Plan, inputs: dict[str, Any]) -> None:
    """Text laid out for the head: one row per choice for multiple choice, else with the
    multimodal placeholders the other inputs fill."""
    if plan.head and "MODEL_FOR_MULTIPLE_CHOICE" in plan.head.mappings:
        # Multiple choice reads (batch, choices, sequence). The second choice is the first with
        # its inner tokens rotated (first and last kept, as a tokenizer keeps BOS and EOS):
        # identical choices score alike, whatever the model, and a loss over them cannot move.
        for name in ("input_ids", "attention_mask"):
            if name in inputs:
                inputs[name] = inputs[name].unsqueeze(1).expand(-1, 2, -1).contiguous()
        ids = inputs.get("input_ids")
        if ids is not None and ids.shape[-1] > 3:
            ids[:, 1, 1:-1] = ids[:, 1, 1:-1].roll(1, dims=-1)
    elif "input_ids" in inputs:
        model, record = plan.model, plan.record
        _insert_placeholders(model, inputs, plan.params, functools.cache(lambda: _base_model(model, record)))


def _masks_and_flags(plan: _Plan, inputs: dict[str, Any]) -> dict[str, Any]:
    """The attention mask of the text, and ``use_cache`` off."""
    import torch

    out: dict[str, Any] = {}
    if "input_ids" in inputs and "attention_mask" in plan.params and "attention_mask" not in inputs:
        # A hinted mask stays: ids with a codebook axis still take a (batch, length) mask.
        out["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "use_cache" in plan.params:
        # Hybrid and recurrent models build caches some of them cannot measure; a forward needs none.
        out["use_cache"] = False
    return out


def _documented_main(plan: _Plan, inputs: dict[str, Any]) -> dict[str, Any]:
    """A main input no builder made, shaped from the forward's docstring where it documents one."""
    if plan.main in inputs or plan.main not in plan.params:
        return {}
    documented = _documented_tensor(plan.model, plan.main, plan.batch, plan.seq_len, plan.generator)
    return {} if documented is None else {plan.main: documented}


def _require_main(plan: _Plan, inputs: dict[str, Any]) -> None:
    """Raise ``FactoryError`` when the main input is missing and nothing stands in for it."""
    main = plan.main
    built = any(hasattr(v, "shape") for v in inputs.values())
    if main not in inputs and main in plan.params and (main in plan.required or not built):
        # An optional main input may stand beside aliases the head reads instead (input_ids, ...).
        raise FactoryError(f"no synthetic input for {main!r} (add an inputs hint in models.toml)")


def _contrastive_logits(model: Any) -> set[str]:
    """The contrastive logits (``logits_per_text``, ``logits_per_image``, ...) the forward returns."""
    import typing

    try:
        annotation = inspect.signature(type(model).forward).return_annotation
    except (TypeError, ValueError):
        return set()
    found: set[str] = set()
    for output in typing.get_args(annotation) or (annotation,):
        fields = getattr(output, "__dataclass_fields__", None) or {}
        found.update(name for name in fields if name.startswith("logits_per_"))
    return found


def _base_model(model: Any, record: ModelRecord) -> Any:
    """The model type's base model (the ``Model`` head) on the same config, or None."""
    import torch
    import transformers

    try:
        cls = getattr(transformers, record.head("Model").class_name)
        torch.manual_seed(SEED)
        return cls(model.config).eval()
    except Exception:
        return None


@functools.cache
def _frames_first(name: str | None) -> bool:
    """Whether a feature extractor (built with its defaults) lays out (batch, frames, bins)."""
    import numpy as np
    import transformers

    if not name:
        return False
    try:
        extractor = getattr(transformers, name)()
        rate = getattr(extractor, "sampling_rate", 16000)
        wave = np.random.default_rng(SEED).standard_normal(rate // 2).astype("float32")
        features = extractor(wave, sampling_rate=rate, return_tensors="np")["input_features"]
    except Exception:
        return False
    size = getattr(extractor, "feature_size", None)
    # Last comes a bin per feature, or a stack of them (Seamless: 2 frames of 80 bins, 160).
    return bool(size) and features.ndim == 3 and features.shape[-1] % size == 0 and features.shape[1] != size


def _audio_samples(config: Any) -> int:
    """Enough raw samples for every frame-level kernel (x-vector TDNN layers) after the encoder."""
    kernels = getattr(config, "tdnn_kernel", None)
    dilations = getattr(config, "tdnn_dilation", None) or [1] * len(kernels or [])
    strides = getattr(config, "conv_stride", None)
    if not int_list(kernels) or not int_list(strides):
        return AUDIO_SAMPLES
    frames = 1 + sum((k - 1) * d for k, d in zip(kernels, dilations, strict=False))
    return max(AUDIO_SAMPLES, (frames + 2) * math.prod(strides))


def _documented_shape(model: Any, name: str) -> list[str]:
    """The dimension names a forward's docstring gives an input, e.g. ["batch_size", "channels", "num_samples"]."""
    doc = type(model).forward.__doc__ or ""
    shape = re.search(rf"{name} \(`[^`]*` of shape `?\(([^)]*)\)", doc)
    return [d.strip() for d in shape.group(1).split(",")] if shape else []


def _documented_tensor(model: Any, name: str, batch: int, length: int, generator: Any) -> Any:
    """A float input shaped as the forward's docstring documents it, or None.

    Each dimension named after a config field (hidden_size, num_mel_bins, ...) takes its value,
    ``batch_size`` the batch, and any other name (frames, sequence_length) the sequence length.
    """
    import torch

    dims = _documented_shape(model, name)
    if len(dims) < 2 or dims[0] not in ("batch_size", "batch") or name.endswith("_ids"):
        return None
    shape = [batch]
    for dim in dims[1:]:
        value = (
            find_setting(model.config, dim) if dim.isidentifier() else (int(dim) if dim.isdigit() else None)
        )
        shape.append(
            value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else length
        )
    return torch.randn(*shape, generator=generator)


def _feature_extractor(record: ModelRecord) -> str | None:
    """The model type's feature extractor, else the one of a model type in the same module (an
    audio tower's sub-config has none of its own, and is fed what its parent's extractor emits)."""
    own = record.processors.get("feature_extractor")
    if own:
        return own
    return next(
        (
            r.processors["feature_extractor"]
            for r in load_catalog()
            if r.module == record.module and "feature_extractor" in r.processors
        ),
        None,
    )


@functools.cache
def _extracted_rank(extractor_class: str | None) -> int | None:
    """How many dimensions the ``input_values`` the model type's own feature extractor emits have.

    Its output is what the model is fed in use, so it settles the layout where the docstrings
    disagree (OmniASR's CTC head documents (batch, samples), its extractor emits (batch, 1,
    samples) and its first convolution reads one channel).
    """
    import numpy as np
    import transformers

    found = getattr(transformers, extractor_class or "", None)
    if found is None:
        return None
    try:
        extractor = found()
        rate = getattr(extractor, "sampling_rate", 16000)
        waveform = np.random.default_rng(SEED).standard_normal(AUDIO_SAMPLES).astype(np.float32)
        values = extractor(waveform, sampling_rate=rate, return_tensors="pt")
    # An extractor that cannot run on a plain waveform with its defaults says nothing.
    except Exception:
        return None
    tensor = values.get("input_values") if hasattr(values, "get") else None
    return getattr(tensor, "ndim", None)


def _unpacks_channels(model: Any) -> bool:
    """Whether the model's source unpacks its audio as (batch, channels, samples)."""
    return "channels, input_length = input_values.shape" in _source(type(model).forward, type(model))


def _insert_placeholders(model: Any, inputs: dict[str, Any], params: Any, base: Any = None) -> None:
    """Put as many placeholder tokens in ``input_ids`` as the model yields feature rows."""
    import torch

    config = model.config
    # A head that wraps a whole vision-language model keeps the placeholder ids on its config.
    inner = getattr(_wrapped(model), "config", None)
    batch = inputs["input_ids"].shape[0]
    blocks, kinds, position_mask = [], [], None
    for kind, (token_keys, method, main, prefixes) in enumerate(_PLACEHOLDERS, start=1):
        token = next(
            (
                getattr(c, k)
                for c in (config, inner)
                for k in token_keys
                if c is not None and isinstance(getattr(c, k, None), int)
            ),
            None,
        )
        mask_name = f"{token_keys[0].split('_')[0]}_embeds_position_mask"
        if main not in inputs or (token is None and mask_name not in params):
            continue
        rows = _feature_rows(model, method, inputs, main, prefixes, base)
        if rows and rows % batch == 0 and token is None:
            # No placeholder id: the model marks the feature positions with a mask instead.
            filler = inputs["input_ids"][:, 1:2].expand(-1, rows // batch)
            blocks.append(filler)
            kinds.append(torch.ones((batch, rows // batch), dtype=torch.long))
            position_mask = mask_name
        elif rows and rows % batch == 0:
            blocks.append(torch.full((batch, rows // batch), token, dtype=torch.long))
            kinds.append(torch.full((batch, rows // batch), kind, dtype=torch.long))
    if blocks:
        ids = inputs["input_ids"]
        inputs["input_ids"] = torch.cat([ids[:, :1], *blocks, ids[:, 1:]], dim=1)
        if position_mask:
            text = torch.zeros_like(ids)
            inputs[position_mask] = torch.cat([text[:, :1], *kinds, text[:, 1:]], dim=1)
        if "mm_token_type_ids" in params:
            # Which modality each position holds (0 text, 1 image, 2 video), for multimodal RoPE.
            text = torch.zeros_like(ids)
            inputs["mm_token_type_ids"] = torch.cat([text[:, :1], *kinds, text[:, 1:]], dim=1)


def _tensor_from_hint(hint: dict[str, Any], generator: Any) -> Any:
    import torch

    shape = tuple(hint["shape"])
    kind = hint.get("kind", "float")
    if kind == "int":
        return torch.randint(hint.get("low", 0), hint.get("high", 2), shape, generator=generator)
    if kind == "ones":
        return torch.ones(shape, dtype=torch.long)
    if kind in ("true", "false"):
        # Boolean masks (padding masks that are True where a frame is padding).
        return torch.full(shape, kind == "true", dtype=torch.bool)
    if kind == "uniform":
        # Floats spread evenly over [low, high): normalised coordinates and the like.
        low, high = hint.get("low", 0.0), hint.get("high", 1.0)
        return low + (high - low) * torch.rand(shape, generator=generator)
    return torch.randn(shape, generator=generator)
