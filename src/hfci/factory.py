"""Factory: a tiny, seeded, randomly initialised model and synthetic inputs for one case.

The config class of the model type is taken with its defaults and shrunk by the generic rules
of ``data/shrink.toml`` at every nesting level, then kept self-consistent (heads dividing
widths, token ids inside the vocabulary, per-layer lists matching the layer count). What the
rules cannot know about one model type comes from ``data/models.toml``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

from hfci import data
from hfci.catalog import ModelRecord

BATCH = 2
SEQ_LEN = 8
AUDIO_SAMPLES = 1600
SEED = 0


class FactoryError(RuntimeError):
    """The case cannot be built; the message says why."""


class MissingDependency(FactoryError):
    """An optional package the model needs is not installed."""

    def __init__(self, package: str, detail: str = ""):
        super().__init__(f"needs the optional package {package!r}{': ' + detail if detail else ''}")
        self.package = package


def model_entry(model_type: str) -> dict[str, Any]:
    """The ``data/models.toml`` entry of a model type (empty if none)."""
    return data.load("models").get(model_type, {})


# -- tiny configs ------------------------------------------------------------------------------


def _is_config_dict(value: Any) -> bool:
    return isinstance(value, dict) and "model_type" in value


def _layer_count(d: dict[str, Any]) -> int | None:
    for key in ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "decoder_layers"):
        if isinstance(d.get(key), int):
            return d[key]
    return None


def shrink(d: dict[str, Any], rules: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of a config dict with every known size lowered, recursively into sub-configs."""
    rules = rules or data.load("shrink")
    ints, caps, widths = rules.get("ints", {}), rules.get("list_caps", {}), rules.get("list_widths", {})
    derived = rules.get("derived_from", {})
    substitutes = rules.get("substitute", {})
    if d.get("model_type") in substitutes:
        kept = {k: d[k] for k in ("out_indices", "out_features", "num_channels") if d.get(k) is not None}
        d = {**substitutes[d["model_type"]], **kept}
    layers_before = _layer_count(d)
    out: dict[str, Any] = {}
    for key, value in d.items():
        if _is_config_dict(value):
            value = shrink(value, rules)
        elif key in derived and derived[key] in d:
            pass
        elif key in ints and isinstance(value, int) and not isinstance(value, bool) and value > ints[key]:
            value = ints[key]
        elif key in caps and _int_list(value):
            value = [min(v, caps[key]) for v in value]
        elif key in widths and _int_list(value) and value and value[0] > widths[key]:
            factor = value[0] / widths[key]
            value = [max(1, round(v / factor)) for v in value]
        out[key] = value
    layers_after = _layer_count(out)
    if layers_before and layers_after and layers_after < layers_before:
        # Per-layer lists (layer_types, sliding windows, ...) must match the new depth.
        for key, value in out.items():
            if isinstance(value, list) and len(value) == layers_before:
                out[key] = value[:layers_after]
    return make_consistent(out)


def _int_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def make_consistent(d: dict[str, Any]) -> dict[str, Any]:
    """Repair what shrinking broke at one level: head counts, head dims, token ids."""
    d = dict(d)
    for width_key, heads_key in (
        ("hidden_size", "num_attention_heads"),
        ("d_model", "encoder_attention_heads"),
        ("d_model", "decoder_attention_heads"),
        ("n_embd", "n_head"),
        ("d_model", "num_heads"),
        ("dim", "n_heads"),
        ("embed_dim", "num_heads"),
    ):
        width, heads = d.get(width_key), d.get(heads_key)
        if isinstance(width, int) and isinstance(heads, int) and heads > 0 and width % heads:
            d[heads_key] = math.gcd(width, heads)
    heads = d.get("num_attention_heads")
    for kv_key in ("num_key_value_heads", "num_kv_heads"):
        kv = d.get(kv_key)
        if isinstance(kv, int) and isinstance(heads, int) and heads > 0 and (kv > heads or heads % kv):
            d[kv_key] = math.gcd(heads, kv)
    vocab = d.get("vocab_size")
    if isinstance(vocab, int) and vocab > 0:
        taken: set[int] = set()
        for key in sorted(d):
            if key.endswith(("_token_id", "_token_index", "_token_ids")):
                d[key] = _inside_vocab(d[key], vocab, taken)
    return d


def _inside_vocab(value: Any, vocab: int, taken: set[int]) -> Any:
    if isinstance(value, list):
        return [_inside_vocab(v, vocab, taken) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= vocab:
        candidate = vocab - 1
        while candidate in taken and candidate > 0:
            candidate -= 1
        taken.add(candidate)
        return candidate
    return value


def overrides(default: dict[str, Any], tiny: dict[str, Any]) -> dict[str, Any]:
    """Only what shrinking changed, so that the config class re-derives everything else.

    Sub-configs keep their ``model_type`` so the parent builds the same class from the dict.
    """
    out: dict[str, Any] = {}
    for key, value in tiny.items():
        before = default.get(key)
        if _is_config_dict(value):
            changed = overrides(before if isinstance(before, dict) else {}, value)
            if before is None or before.get("model_type") != value.get("model_type"):
                changed = value
            if changed:
                out[key] = {"model_type": value["model_type"], **changed}
        elif value != before:
            out[key] = value
    return out


def _deep_update(d: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def config_class(record: ModelRecord) -> type:
    import transformers

    try:
        return getattr(transformers, record.config_class)
    except (AttributeError, ImportError) as error:
        raise _dependency_error(error) from error


def tiny_config(record: ModelRecord) -> Any:
    """The model type's config, shrunk, with its models.toml overrides applied."""
    cls = config_class(record)
    try:
        default = cls().to_dict()
    except Exception as error:
        raise FactoryError(f"{record.config_class}() with defaults fails: {error}") from error
    changes = overrides(default, shrink(default))
    changes = _deep_update(changes, model_entry(record.model_type).get("config", {}))
    if changes.get("pad_token_id", 0) is None or (
        "pad_token_id" in default and default["pad_token_id"] is None
    ):
        # Classification heads need a pad id to find each sequence's last token.
        changes.setdefault("pad_token_id", 0)
        if changes["pad_token_id"] is None:
            changes["pad_token_id"] = 0
    try:
        return cls(**changes)
    except Exception as error:
        raise FactoryError(f"tiny {record.config_class} is invalid: {error}") from error


# -- models ------------------------------------------------------------------------------------


def _dependency_error(error: BaseException) -> FactoryError:
    text = str(error)
    for package in (
        "timm",
        "torchvision",
        "sentencepiece",
        "scipy",
        "librosa",
        "natten",
        "detectron2",
        "pytesseract",
    ):
        if package in text:
            return MissingDependency(package, text.splitlines()[0][:200])
    return FactoryError(text.splitlines()[0][:300] if text else type(error).__name__)


def build_model(record: ModelRecord, head_name: str, device: str = "cpu", seed: int = SEED) -> Any:
    """The tiny model of one head, seeded, in eval mode, on ``device``."""
    import torch
    import transformers

    head = record.head(head_name)
    config = tiny_config(record)
    try:
        cls = getattr(transformers, head.class_name)
    except (AttributeError, ImportError) as error:
        raise _dependency_error(error) from error
    torch.manual_seed(seed)
    try:
        model = cls(config)
    except ImportError as error:
        raise _dependency_error(error) from error
    model._hfci_head = head_name
    return model.eval().to(device)


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# -- inputs ------------------------------------------------------------------------------------


def _sub_configs(config: Any) -> list[Any]:
    """The config and every nested config, outermost first."""
    from transformers import PreTrainedConfig

    found, queue = [], [config]
    while queue:
        current = queue.pop(0)
        found.append(current)
        for value in vars(current).values():
            if isinstance(value, PreTrainedConfig):
                queue.append(value)
    return found


def _find(config: Any, *keys: str, default: Any = None) -> Any:
    """The first of ``keys`` set on the config or any of its sub-configs."""
    for sub in _sub_configs(config):
        for key in keys:
            value = getattr(sub, key, None)
            if value is not None:
                return value
    return default


def _text_config(config: Any) -> Any:
    try:
        return config.get_text_config(decoder=True)
    except Exception:
        return config


def _size(value: Any, default: int) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, dict) and "height" in value:
        return int(value["height"]), int(value["width"])
    return default, default


def synthetic_inputs(model: Any, record: ModelRecord, seed: int = SEED) -> dict[str, Any]:
    """Inputs for ``model.forward`` shaped by its signature and config (on the model's device)."""
    import torch

    config = model.config
    hints = model_entry(record.model_type).get("inputs", {})
    batch, seq_len = hints.get("batch", BATCH), hints.get("seq_len", SEQ_LEN)
    params = inspect.signature(model.forward).parameters
    generator = torch.Generator().manual_seed(seed)
    main = getattr(model, "main_input_name", "input_ids")
    inputs: dict[str, Any] = {}

    def ids(vocab: int, length: int) -> Any:
        # Skip the lowest ids, where special tokens usually live.
        low = min(4, max(vocab - 1, 0))
        return torch.randint(low, max(vocab, low + 1), (batch, length), generator=generator)

    text = _text_config(config)
    vocab = getattr(text, "vocab_size", None) or _find(config, "vocab_size", default=99)
    if "input_ids" in params and (main == "input_ids" or record.category in ("text", "multimodal")):
        inputs["input_ids"] = ids(vocab, seq_len)
        if "attention_mask" in params:
            inputs["attention_mask"] = torch.ones(batch, seq_len, dtype=torch.long)
    if "pixel_values" in params and (main == "pixel_values" or record.category in ("vision", "multimodal")):
        channels = _find(config, "num_channels", "in_channels", "input_channels", default=3)
        height, width = _size(hints.get("image_size", _find(config, "image_size", "input_size")), 32)
        inputs["pixel_values"] = torch.rand(batch, channels, height, width, generator=generator)
    if "input_values" in params and main == "input_values":
        samples = hints.get("audio_samples", AUDIO_SAMPLES)
        inputs["input_values"] = torch.randn(batch, samples, generator=generator)
    if "input_features" in params and main == "input_features":
        bins = _find(config, "num_mel_bins", "feature_size", "input_feat_per_channel", default=16)
        frames = hints.get("frames") or 2 * (_find(config, "max_source_positions", default=32) or 32)
        inputs["input_features"] = torch.randn(batch, bins, frames, generator=generator)
    if "decoder_input_ids" in params and getattr(config, "is_encoder_decoder", False):
        decoder_vocab = _find(config, "decoder_vocab_size", default=None) or vocab
        inputs["decoder_input_ids"] = ids(decoder_vocab, seq_len)
    head = record.head(getattr(model, "_hfci_head", "")) if getattr(model, "_hfci_head", None) else None
    if head and "MODEL_FOR_MULTIPLE_CHOICE" in head.mappings:
        # Multiple choice reads (batch, choices, sequence).
        for name in ("input_ids", "attention_mask"):
            if name in inputs:
                inputs[name] = inputs[name].unsqueeze(1).expand(-1, 2, -1).contiguous()
    if "use_cache" in params:
        # Hybrid and recurrent models build caches some of them cannot measure; a forward needs none.
        inputs["use_cache"] = False
    for name, value in hints.get("tensors", {}).items():
        inputs[name] = _tensor_from_hint(value, generator)
    if main not in inputs and main in params:
        raise FactoryError(f"no synthetic input for {main!r} (add an inputs hint in models.toml)")
    device = next((p.device for p in model.parameters()), "cpu")
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}


def _tensor_from_hint(hint: dict[str, Any], generator: Any) -> Any:
    import torch

    shape = tuple(hint["shape"])
    kind = hint.get("kind", "float")
    if kind == "int":
        return torch.randint(hint.get("low", 0), hint.get("high", 2), shape, generator=generator)
    if kind == "ones":
        return torch.ones(shape, dtype=torch.long)
    return torch.randn(shape, generator=generator)


@dataclass
class TinyCase:
    """A built case: the model, its inputs, and what it was built from."""

    record: ModelRecord
    head: str
    device: str
    model: Any
    inputs: dict[str, Any]

    @property
    def parameters(self) -> int:
        return parameter_count(self.model)


def build_case(record: ModelRecord, head: str, device: str = "cpu", seed: int = SEED) -> TinyCase:
    """Model and inputs for one (model type, head) on one device."""
    model = build_model(record, head, device, seed)
    return TinyCase(record, head, device, model, synthetic_inputs(model, record, seed))
