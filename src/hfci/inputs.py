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
from typing import Any

from hfci.catalog import ModelRecord
from hfci.configs import find_setting, int_list, special_token_ids, text_config
from hfci.factory import SEED, FactoryError, model_entry

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


def _image_stacks(model: Any) -> bool:
    """Whether the model (or the base model it wraps) unpacks its images as (batch, num_images, ...)."""
    sources = []
    for module in (model, _wrapped(model)):
        with contextlib.suppress(OSError, TypeError):
            sources.append(inspect.getsource(type(module)))
    pattern = r"\w+, num_images\b[^=\n]*= pixel_values\.shape"
    return any(re.search(pattern, source) for source in sources)


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
    if hasattr(output, "keys"):
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
    found = _flat_tensors(output)
    # The width of the text the features replace, from the model that owns the feature method.
    owner = getattr(getattr(function, "__self__", None), "config", None) or model.config
    width = getattr(text_config(owner), "hidden_size", None) or getattr(
        text_config(model.config), "hidden_size", None
    )
    if not found or not width:
        return None
    total = sum(t.numel() for t in found)
    return total // width if total % width == 0 else None


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
    and for multiple choice; without it, every hint applies.
    """
    import torch

    config = model.config
    hints = model_entry(record.model_type).get("inputs", {})
    batch, seq_len = hints.get("batch", BATCH), hints.get("seq_len", SEQ_LEN)
    params = inspect.signature(model.forward).parameters
    required = _required(params)
    generator = torch.Generator().manual_seed(seed)
    main = main_input(model)
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if main not in params and named:
        # A main input name inherited from a shared base class the forward does not take: the
        # forward's first parameter is the main input.
        main = named[0]
    inputs: dict[str, Any] = {}
    reserved = special_token_ids(config)

    def ids(vocab: int, length: int) -> Any:
        # Skip the lowest ids, where special tokens usually live, and every reserved id.
        low = min(4, max(vocab - 1, 0))
        out = torch.randint(low, max(vocab, low + 1), (batch, length), generator=generator)
        free = [i for i in range(low, vocab) if i not in reserved] or [low]
        for token in reserved:
            out[out == token] = free[token % len(free)]
        return out

    # A contrastive model (logits_per_text against logits_per_image/audio/...) compares both
    # modalities in one forward: each of them needs its input, whichever is the main one.
    contrastive = _contrastive_logits(model)

    def wanted(name: str, *mains: str) -> bool:
        return name in params and (main in (name, *mains) or name in required or contrastive)

    text = text_config(config)
    vocab = getattr(text, "vocab_size", None) or find_setting(config, "vocab_size", default=99)
    prompted = record.category == "vision" and getattr(config, "text_config", None) is not None
    if wanted("input_ids") or (
        # Vision models with a text tower (open-vocabulary segmenters) read a text prompt too.
        "input_ids" in params and (record.category in ("text", "multimodal") or prompted)
    ):
        inputs["input_ids"] = ids(vocab, seq_len)
        eos = getattr(text, "eos_token_id", None)
        eos = eos[0] if isinstance(eos, list) and eos else eos
        placeholders = {getattr(config, k, None) for keys, *_ in _PLACEHOLDERS for k in keys}
        if (
            isinstance(eos, int)
            and 0 <= eos < vocab
            and eos != getattr(text, "pad_token_id", None)
            and eos not in placeholders
        ):
            # Sequence classification of encoder-decoders reads the last end-of-sequence token.
            inputs["input_ids"][:, -1] = eos
    for name in sorted(required):
        if name.endswith("_input_ids") and name not in inputs:
            # A second tokenizer's ids (a Q-Former's, a prompt encoder's) index its own vocabulary.
            sub = getattr(config, name.removesuffix("_input_ids") + "_config", None)
            inputs[name] = ids(getattr(sub, "vocab_size", None) or vocab, seq_len)
    grid_key = next((k for k in ("image_grid_thw", "grid_thw") if k in params), None)
    # A vision tower that requires its patch rows and their grid takes them whatever its category.
    patch_rows = next((k for k in ("pixel_values", "hidden_states") if k in required), None)
    grid_required = grid_key in required and patch_rows is not None
    # A model built without its optional vision tower (vision_config None) reads no images.
    sighted = getattr(config, "vision_config", True) is not None or "pixel_values" in required
    if sighted and (
        wanted("pixel_values")
        or ("pixel_values" in params and (record.category in ("vision", "multimodal") or grid_required))
    ):
        if grid_key:
            inputs["pixel_values"], inputs[grid_key] = _patch_grid(config, batch, generator)
        elif "spatial_shapes" in params:
            # Native-resolution (NaFlex) encoders read flattened patches, their mask and grid.
            height, width = _size(
                hints.get("image_size", find_setting(config, "image_size", "input_size")), 32
            )
            inputs.update(_flex_patches(config, batch, height, width, generator))
        else:
            channels = find_setting(config, "num_channels", "in_channels", "input_channels", default=3)
            height, width = _size(
                hints.get("image_size", find_setting(config, "image_size", "input_size")), 32
            )
            inputs["pixel_values"] = torch.rand(batch, channels, height, width, generator=generator)
            if _image_stacks(model):
                # Models that read several images per sample: (batch, images, channels, h, w).
                inputs["pixel_values"] = inputs["pixel_values"].unsqueeze(1)
            if record.family == "video-encoder" or "logits_per_video" in contrastive:
                # Video encoders read their clip through pixel_values: (batch, frames, c, h, w).
                frames = hints.get("frames") or find_setting(
                    config, "num_frames", "frames_per_clip", default=2
                )
                inputs["pixel_values"] = torch.rand(
                    batch, frames, channels, height, width, generator=generator
                )
            grid = getattr(config, "image_grid_pinpoints", None)
            if "image_sizes" in params and isinstance(grid, list) and grid:
                # Any-resolution models read (batch, patches, channels, h, w) and each image's size;
                # they keep as many patches as the best-fitting grid needs: give the most any needs.
                patches = 1 + max(math.ceil(h / height) * math.ceil(w / width) for h, w in grid)
                inputs["pixel_values"] = torch.rand(
                    batch, patches, channels, height, width, generator=generator
                )
                inputs["image_sizes"] = torch.tensor([[height, width]] * batch)
            elif "image_sizes" in params and _feature_method_requires(
                model, "get_image_features", "image_sizes"
            ):
                # Variable-resolution towers (Pixtral) read each image's size to cut its patches.
                inputs["image_sizes"] = torch.tensor([[height, width]] * batch)
    elif grid_key and "hidden_states" in params and (main == "hidden_states" or grid_required):
        inputs["hidden_states"], inputs[grid_key] = _patch_grid(config, batch, generator)
    if sighted and wanted("pixel_values_videos"):
        if "video_grid_thw" in params:
            inputs["pixel_values_videos"], inputs["video_grid_thw"] = _patch_grid(config, batch, generator)
        else:
            channels = find_setting(config, "num_channels", "in_channels", default=3)
            height, width = _size(
                hints.get("image_size", find_setting(config, "image_size", "input_size")), 32
            )
            frames = hints.get("frames") or find_setting(config, "num_frames", "frames_per_clip", default=2)
            frames = min(frames, 8)
            inputs["pixel_values_videos"] = torch.rand(
                batch, frames, channels, height, width, generator=generator
            )
    if wanted("input_values"):
        samples = hints.get("audio_samples", _audio_samples(config))
        channels = find_setting(config, "audio_channels", default=1)
        documented = _documented_shape(model, "input_values")
        sized = [find_setting(config, name) for name in documented[1:]]
        if len(documented) == 3 and all(isinstance(v, int) and v > 0 for v in sized):
            # Spectrogram transformers read (batch, frames, bins) sized by their config.
            shape = (batch, *sized)
        elif channels > 1 or len(documented) == 3 or _unpacks_channels(model):
            shape = (batch, channels, samples)
        else:
            shape = (batch, samples)
        inputs["input_values"] = torch.randn(*shape, generator=generator)
    if wanted("input_features"):
        bins = find_setting(config, "num_mel_bins", "feature_size", "input_feat_per_channel", default=16)
        frames = hints.get("frames") or 2 * (find_setting(config, "max_source_positions", default=32) or 32)
        if _frames_first(record.processors.get("feature_extractor")):
            inputs["input_features"] = torch.randn(batch, frames, bins, generator=generator)
            mask_shape = (batch, frames)
        else:
            inputs["input_features"] = torch.randn(batch, bins, frames, generator=generator)
            mask_shape = (batch, frames)
        for name in ("input_features_mask", "feature_attention_mask"):
            if name in required:
                inputs[name] = torch.ones(mask_shape, dtype=torch.long)
    _time_series_inputs(config, params, required, main, inputs, batch, generator)
    if "decoder_input_ids" in params and (
        getattr(config, "is_encoder_decoder", False) or "decoder_input_ids" in required
    ):
        decoder_vocab = find_setting(config, "decoder_vocab_size", default=None) or vocab
        inputs["decoder_input_ids"] = ids(decoder_vocab, seq_len)
    case_head = record.head(head) if head else None
    for name, value in hints.get("tensors", {}).items():
        if name in params and (case_head is None or case_head.name in value.get("heads", [case_head.name])):
            # One hint serves every head of the type (or the heads it names) that takes the input.
            inputs[name] = _tensor_from_hint(value, generator)
    matcher = any("MODEL_FOR_KEYPOINT_MATCHING" in h.mappings for h in record.heads)
    if matcher and "pixel_values" in inputs and inputs["pixel_values"].dim() == 4:
        # Keypoint matchers (and their base models) read image pairs: (batch, 2, c, h, w).
        inputs["pixel_values"] = torch.stack([inputs["pixel_values"], inputs["pixel_values"].flip(-1)], dim=1)
    if case_head and "MODEL_FOR_MULTIPLE_CHOICE" in case_head.mappings:
        # Multiple choice reads (batch, choices, sequence).
        for name in ("input_ids", "attention_mask"):
            if name in inputs:
                inputs[name] = inputs[name].unsqueeze(1).expand(-1, 2, -1).contiguous()
    elif "input_ids" in inputs:
        _insert_placeholders(model, inputs, params, functools.cache(lambda: _base_model(model, record)))
    if "input_ids" in inputs and "attention_mask" in params and "attention_mask" not in inputs:
        # A hinted mask stays: ids with a codebook axis still take a (batch, length) mask.
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "use_cache" in params:
        # Hybrid and recurrent models build caches some of them cannot measure; a forward needs none.
        inputs["use_cache"] = False
    if main not in inputs and main in params:
        documented = _documented_tensor(model, main, batch, seq_len, generator)
        if documented is not None:
            inputs[main] = documented
    built = any(hasattr(v, "shape") for v in inputs.values())
    if main not in inputs and main in params and (main in required or not built):
        # An optional main input may stand beside aliases the head reads instead (input_ids, ...).
        raise FactoryError(f"no synthetic input for {main!r} (add an inputs hint in models.toml)")
    device = next((p.device for p in model.parameters()), "cpu")
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}


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
    return features.ndim == 3 and features.shape[-1] == size and features.shape[1] != size


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


def _unpacks_channels(model: Any) -> bool:
    """Whether the model's source unpacks its audio as (batch, channels, samples)."""
    try:
        source = inspect.getsource(type(model).forward) + inspect.getsource(type(model))
    except (OSError, TypeError):
        return False
    return "channels, input_length = input_values.shape" in source


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


def _time_series_inputs(
    config: Any,
    params: Any,
    required: set[str],
    main: str,
    inputs: dict[str, Any],
    batch: int,
    generator: Any,
) -> None:
    """Past (and future) values, time features and observed masks sized by the config."""
    import torch

    if "past_values" not in params or not ("past_values" in required or main == "past_values"):
        return
    context = getattr(config, "context_length", None) or 16
    lags = getattr(config, "lags_sequence", None) or [0]
    length = context + max(lags)
    channels = getattr(config, "num_input_channels", None) or getattr(config, "input_size", None) or 1
    shape = (
        (batch, length, channels)
        if channels > 1 or hasattr(config, "num_input_channels")
        else (batch, length)
    )
    inputs["past_values"] = torch.randn(*shape, generator=generator)
    time_features = getattr(config, "num_time_features", None)
    if "past_time_features" in params and time_features is not None:
        inputs["past_time_features"] = torch.randn(batch, length, time_features, generator=generator)
    if "past_observed_mask" in params:
        inputs["past_observed_mask"] = torch.ones(shape)
    if "past_values_padding" in params:
        inputs["past_values_padding"] = torch.zeros(batch, length, dtype=torch.long)
    if "freq" in params:
        inputs["freq"] = torch.zeros(batch, dtype=torch.long)
    horizon = getattr(config, "prediction_length", None)
    if getattr(config, "is_encoder_decoder", False) and horizon and "future_values" in params:
        future = (batch, horizon, *shape[2:])
        inputs["future_values"] = torch.randn(*future, generator=generator)
        if "future_time_features" in params and time_features is not None:
            inputs["future_time_features"] = torch.randn(batch, horizon, time_features, generator=generator)


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
