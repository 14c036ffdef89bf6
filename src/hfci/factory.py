"""Factory: a tiny, seeded, randomly initialised model for one case (its inputs: ``inputs``).

The config class of the model type is taken with its defaults and shrunk by the generic rules
of ``data/shrink.toml`` at every nesting level, then kept self-consistent (heads dividing
widths, token ids inside the vocabulary, per-layer lists matching the layer count). What the
rules cannot know about one model type comes from ``data/models.toml``.

The initialisation is then perturbed (see :func:`inform_weights`): a fresh model's biases are 0
and its norm scales 1, so a backend that dropped them would compute the same outputs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import inspect
import math
import re
from typing import Any

from hfci import data
from hfci.catalog import ModelRecord
from hfci.configs import (
    TOKEN_ID_SUFFIXES,
    int_list,
    is_config_dict,
    layer_count,
    nested_config_dicts,
    sub_configs,
)
from hfci.outputs import SEED

__all__ = [
    "FactoryError",
    "MissingDependency",
    "absent_package",
    "build_model",
    "config_class",
    "inform_weights",
    "make_consistent",
    "overrides",
    "shrink",
    "tiny_config",
]


class FactoryError(RuntimeError):
    """The case cannot be built; the message says why."""


class MissingDependency(FactoryError):
    """An optional package the model needs is not installed."""

    def __init__(self, package: str, detail: str = ""):
        super().__init__(f"needs the optional package {package!r}{': ' + detail if detail else ''}")
        self.package = package


# -- tiny configs ------------------------------------------------------------------------------


def shrink(d: dict[str, Any], rules: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of a config dict with every known size lowered, recursively into sub-configs."""
    rules = rules or data.load("shrink")
    d = _substituted(d, rules.get("substitute", {}))
    layers_before = layer_count(d)
    out = {key: _shrunk_value(key, value, d, rules) for key, value in d.items()}
    _cap_suffix_ints(out, rules)
    _group_queries(d, out)
    _keep_depthwise(d, out)
    _trim_layers(out, layers_before)
    _rescale_pinpoints(d, out)
    _remap_out_stages(d, out, layers_before)
    return make_consistent(out)


def _substituted(d: dict[str, Any], substitutes: dict[str, Any]) -> dict[str, Any]:
    """A sub-config that needs an optional package (a timm backbone) swapped for a built-in
    equivalent, keeping the output stages and channels its parent reads."""
    if d.get("model_type") not in substitutes:
        return d
    kept = {k: d[k] for k in ("out_indices", "out_features", "num_channels") if d.get(k) is not None}
    return {**substitutes[d["model_type"]], **kept}


def _shrunk_value(key: str, value: Any, d: dict[str, Any], rules: dict[str, Any]) -> Any:
    """One field of a config dict after the rules: sub-configs recurse, sizes go down to the caps."""
    ints, caps, widths = rules.get("ints", {}), rules.get("list_caps", {}), rules.get("list_widths", {})
    derived = rules.get("derived_from", {})
    if is_config_dict(value):
        value = shrink(value, rules)
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        # Per-layer or per-stage tables of settings shrink like configs.
        value = {k: shrink(v, rules) for k, v in value.items()}
    elif key in derived and derived[key] in d:
        # The config class derives this field from another one: left as is, it follows.
        pass
    elif key in ints and isinstance(value, int) and not isinstance(value, bool) and value > ints[key]:
        value = ints[key]
    elif key in caps and int_list(value):
        value = [min(v, caps[key]) for v in value]
    elif key in widths and int_list(value) and value and value[0] > widths[key]:
        factor = value[0] / widths[key]
        value = [max(1, round(v / factor)) for v in value]
    fill = rules.get("fill_none", {})
    if value is None and key in fill:
        value = fill[key]
    return value


def _cap_suffix_ints(out: dict[str, Any], rules: dict[str, Any]) -> None:
    """Sizes no rule names exactly, caught by how their name ends (``..._size``, ...)."""
    ints, suffixes = rules.get("ints", {}), rules.get("suffix_ints", {})
    for key, value in out.items():
        if isinstance(value, int) and not isinstance(value, bool) and key not in ints:
            for suffix, limit in suffixes.items():
                if key.endswith(suffix) and value > limit:
                    out[key] = limit


_KV_FIELDS = (("num_attention_heads", "num_key_value_heads"), ("num_heads", "num_kv_heads"))


def _group_queries(before: dict[str, Any], out: dict[str, Any]) -> None:
    """A config with a key/value head count takes grouped queries, as its real checkpoints mostly
    do (Llama 3, Qwen2, Phi-3 default to as many as query heads): two query heads per key/value
    head, so a backend that mis-maps them shows."""
    for heads_key, kv_key in _KV_FIELDS:
        heads = out.get(heads_key)
        if kv_key in before and isinstance(heads, int) and heads % 2 == 0 and heads > 1:
            out[kv_key] = heads // 2


def _keep_depthwise(before: dict[str, Any], out: dict[str, Any]) -> None:
    """Depthwise convolutions (as many groups as channels) stay depthwise at the new width."""
    for key, value in before.items():
        if key.endswith("groups") and isinstance(value, int) and out.get(key) == value:
            for width in ("hidden_size", "d_model", "dim"):
                if before.get(width) == value and isinstance(out.get(width), int) and out[width] != value:
                    out[key] = out[width]
                    break


def _trim_layers(out: dict[str, Any], layers_before: int | None) -> None:
    """Per-layer lists (layer_types, sliding windows, ...) must match the new depth."""
    layers_after = layer_count(out)
    if not (layers_before and layers_after and layers_after < layers_before):
        return
    kept = _kept_layers(out, layers_before, layers_after)
    for key, value in out.items():
        if isinstance(value, list) and len(value) == layers_before:
            out[key] = [value[i] for i in kept]
        elif _layer_table(value):
            # Renumbered like the layers they describe.
            out[key] = {_layer_key(k, kept.index(int(k))): v for k, v in value.items() if int(k) in kept}
    _cap_shared_layers(out, kept)


def _layer_table(value: Any) -> bool:
    """Whether a value is a per-layer table of settings keyed by layer index ("0", 1, "02", ...)."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(str(k).isdigit() and isinstance(v, dict) for k, v in value.items())
    )


def _kept_layers(d: dict[str, Any], before: int, after: int) -> list[int]:
    """Which of ``before`` layers a depth of ``after`` keeps: the first ones, but at least one of
    every kind a per-layer list of names (layer_types, ...) holds, as far as the depth allows."""
    kept = list(range(after))
    for kinds in d.values():
        if not (isinstance(kinds, list) and len(kinds) == before and all(isinstance(k, str) for k in kinds)):
            continue
        for kind in dict.fromkeys(kinds):
            if any(kinds[i] == kind for i in kept):
                continue
            # Replace the last kept layer whose kind another kept layer also has.
            for position in reversed(range(len(kept))):
                if sum(kinds[i] == kinds[kept[position]] for i in kept) > 1:
                    kept[position] = kinds.index(kind)
                    break
            kept.sort()
    return kept


def _layer_key(key: Any, index: int) -> Any:
    """A per-layer table's key for a new layer index, written like the old one ("05", 5, "5")."""
    if isinstance(key, int):
        return index
    return str(index).zfill(len(key)) if key.startswith("0") and len(key) > 1 else str(index)


def _cap_shared_layers(d: dict[str, Any], kept: list[int]) -> None:
    """Layers that reuse earlier layers' key/value states (the last ``num_kv_shared_layers``) need
    an earlier layer of every kind producing them: fewer shared layers where the depth is short."""
    shared, kinds = d.get("num_kv_shared_layers"), d.get("layer_types")
    if not (isinstance(shared, int) and shared > 0 and isinstance(kinds, list) and kinds):
        return
    producers = max(kinds.index(kind) for kind in set(kinds)) + 1
    d["num_kv_shared_layers"] = max(0, min(shared, len(kinds) - producers))


def _remap_out_stages(before: dict[str, Any], after: dict[str, Any], layers_before: int | None) -> None:
    """A layer-indexed backbone keeps as many output stages as before, spread over its new depth.

    Necks read one feature map per selected stage (``neck_hidden_sizes``, ``reassemble_factors``
    have one entry per stage); dropping the stages past the new depth breaks them.
    """
    indices, stages = before.get("out_indices"), before.get("stage_names")
    layers_key = next(
        (
            k
            for k in ("num_hidden_layers", "num_layers", "n_layer", "n_layers")
            if isinstance(after.get(k), int)
        ),
        None,
    )
    if not (int_list(indices) and indices and isinstance(stages, list) and layers_key and layers_before):
        return
    layers = after[layers_key]
    if len(stages) != layers_before + 1 or layers >= layers_before or all(0 <= i <= layers for i in indices):
        return
    count = len(indices)
    layers = max(layers, count)
    scaled = [min(layers, max(1, round(i * layers / layers_before))) for i in indices]
    for j in range(count - 2, -1, -1):
        scaled[j] = min(scaled[j], scaled[j + 1] - 1)
    for j in range(count):
        scaled[j] = max(scaled[j], 1 if j == 0 else scaled[j - 1] + 1)
    layers = max(layers, scaled[-1])
    after[layers_key] = layers
    after["out_indices"] = scaled
    if stages == ["stem"] + [f"stage{i}" for i in range(1, layers_before + 1)]:
        after["stage_names"] = ["stem"] + [f"stage{i}" for i in range(1, layers + 1)]
        if isinstance(before.get("out_features"), list):
            after["out_features"] = [f"stage{i}" for i in scaled]
    elif isinstance(before.get("out_features"), list):
        after["out_features"] = None


def _rescale_pinpoints(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Any-resolution grids (multiples of the vision tower's image size) follow its new size."""
    grid = after.get("image_grid_pinpoints")
    old_vision, new_vision = before.get("vision_config"), after.get("vision_config")
    if not (isinstance(grid, list) and grid and all(int_list(p) and len(p) == 2 for p in grid)):
        return
    if not (isinstance(old_vision, dict) and isinstance(new_vision, dict)):
        return
    old, new = old_vision.get("image_size"), new_vision.get("image_size")
    if not (isinstance(old, int) and isinstance(new, int) and 0 < new < old):
        return
    scaled: list[list[int]] = []
    for height, width in grid:
        pair = [max(1, round(height / old)) * new, max(1, round(width / old)) * new]
        if pair not in scaled:
            scaled.append(pair)
    after["image_grid_pinpoints"] = scaled


def make_consistent(d: dict[str, Any]) -> dict[str, Any]:
    """Repair what shrinking broke at one level: head counts, head dims, token ids."""
    d = dict(d)
    _divide_widths(d)
    _fit_mrope_heads(d)
    _fit_kv_heads(d)
    _mamba_heads(d)
    head_dim = _fill_head_dim(d)
    _fit_mrope_sections(d, head_dim)
    _fit_window(d)
    _clamp_feature_layers(d)
    _ids_inside_vocab(d)
    return d


# (width, head count) fields: the heads split the width evenly.
_WIDTH_HEADS = (
    ("hidden_size", "num_attention_heads"),
    ("d_model", "encoder_attention_heads"),
    ("d_model", "decoder_attention_heads"),
    ("n_embd", "n_head"),
    ("d_model", "num_heads"),
    ("dim", "n_heads"),
    ("embed_dim", "num_heads"),
    ("hidden_size", "num_heads"),
    ("hidden_size", "n_heads"),
    ("dim", "num_heads"),
)


def _divide_widths(d: dict[str, Any]) -> None:
    """Head counts that divide their (shrunk) width."""
    for width_key, heads_key in _WIDTH_HEADS:
        width, heads = d.get(width_key), d.get(heads_key)
        if isinstance(width, int) and isinstance(heads, int) and heads > 0 and width % heads:
            d[heads_key] = math.gcd(width, heads)


def _fit_kv_heads(d: dict[str, Any]) -> None:
    """Key/value head counts (global and per layer) that divide the query heads."""
    heads = d.get("num_attention_heads")
    for kv_key in ("num_key_value_heads", "num_kv_heads"):
        kv = d.get(kv_key)
        if kv_key in d and kv is None and isinstance(heads, int) and heads > 0:
            # None means multi-head attention (and some modeling code divides by it as is); a
            # config with the field supports grouped queries, which real checkpoints use: two
            # query heads per key/value head.
            d[kv_key] = kv = heads // 2 if heads % 2 == 0 else heads
        if isinstance(kv, int) and isinstance(heads, int) and heads > 0 and (kv > heads or heads % kv):
            d[kv_key] = math.gcd(heads, kv)
    per_layer = d.get("num_key_value_heads_per_layer")
    if int_list(per_layer) and isinstance(heads, int) and heads > 0:
        d["num_key_value_heads_per_layer"] = [math.gcd(heads, kv) if kv > 0 else kv for kv in per_layer]


def _fill_head_dim(d: dict[str, Any]) -> int | None:
    """The head width: the config's, else width over heads (written back where the field is None)."""
    head_dim = d.get("head_dim")
    if isinstance(head_dim, int):
        return head_dim
    width, heads = d.get("hidden_size"), d.get("num_attention_heads")
    head_dim = width // heads if isinstance(width, int) and isinstance(heads, int) and heads else None
    if "head_dim" in d and head_dim:
        # Some modeling code reads ``config.head_dim`` without deriving it when it is None.
        d["head_dim"] = head_dim
    return head_dim


def _fit_mrope_sections(d: dict[str, Any], head_dim: int | None) -> None:
    """Multimodal rotary sections that split the rotated half of a (shrunk) head."""
    for rope_key in ("rope_parameters", "rope_scaling"):
        if not (isinstance(d.get(rope_key), dict) and head_dim):
            continue
        ropes = _flat_ropes(d[rope_key])
        for name, rope in ropes.items():
            if int_list(rope.get("mrope_section")):
                half = max(_rotated_half(d, rope, head_dim), len(rope["mrope_section"]))
                ropes[name] = {**rope, "mrope_section": _split_evenly(rope["mrope_section"], half)}
        d[rope_key] = ropes.get(None, ropes)


def _fit_window(d: dict[str, Any]) -> None:
    """Beside a patch size and a merge size, the window is measured in pixels: it must hold at
    least one merged patch."""
    window, patch, merge = d.get("window_size"), d.get("patch_size"), d.get("spatial_merge_size")
    if all(isinstance(v, int) and v > 0 for v in (window, patch, merge)) and window < patch * merge:
        d["window_size"] = patch * merge


def _ids_inside_vocab(d: dict[str, Any]) -> None:
    """Token ids (and placeholder ids) that index the shrunk vocabulary."""
    vocab = _vocab_of(d)
    if not (isinstance(vocab, int) and vocab > 0):
        return
    # Ids the sub-configs already hold (a text model's end of sequence) stay theirs alone.
    taken = _sub_config_ids(d)
    for key in sorted(d):
        if key.endswith(TOKEN_ID_SUFFIXES):
            d[key] = _inside_vocab(d[key], vocab, taken)
    for key in ("image_token_id", "image_token_index"):
        if key in d and d[key] is None and any(is_config_dict(v) for v in d.values()):
            # A vision-language model without a placeholder id cannot place its image features.
            d[key] = _inside_vocab(vocab, vocab, taken)


def _vocab_of(d: dict[str, Any]) -> Any:
    """The vocabulary a config's ids index: its own, else (a composite's placeholder ids) its text
    model's, else the smallest of its sub-configs'."""
    vocab = d.get("vocab_size")
    if vocab is not None:
        return vocab
    text = d.get("text_config")
    if is_config_dict(text):
        return text.get("vocab_size")
    subs = [v.get("vocab_size") for v in d.values() if is_config_dict(v)]
    return min((v for v in subs if isinstance(v, int)), default=None)


def _sub_config_ids(d: dict[str, Any]) -> set[int]:
    """The token ids the direct sub-configs of a config dict hold."""
    return {
        v
        for sub in d.values()
        if is_config_dict(sub)
        for key, value in sub.items()
        if key.endswith(TOKEN_ID_SUFFIXES)
        for v in (value if isinstance(value, list) else [value])
        if isinstance(v, int) and not isinstance(v, bool)
    }


# State-space (Mamba-2) mixers split ``expand * hidden_size`` channels into heads of equal
# width (or into an explicit inner width), and the heads into groups: (expansion, inner width,
# head count, head width, group count) fields.
_MAMBA_HEADS = (
    ("mamba_expand", "mamba_d_ssm", "mamba_n_heads", "mamba_d_head", "mamba_n_groups"),
    ("expand", None, "num_heads", "head_dim", "n_groups"),
    ("expand", None, "mamba_num_heads", "mamba_head_dim", "n_groups"),
)


def _mamba_heads(d: dict[str, Any]) -> None:
    """Mamba heads that tile the shrunk inner width exactly (heads x head width = expand x width)."""
    width = d.get("hidden_size")
    for expand_key, inner_key, heads_key, dim_key, groups_key in _MAMBA_HEADS:
        expand, heads, dim = d.get(expand_key), d.get(heads_key), d.get(dim_key)
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, expand, heads, dim)
        ):
            continue
        inner = d.get(inner_key) if inner_key else None
        inner = inner if isinstance(inner, int) and inner > 0 else expand * width
        if heads * dim == inner:
            continue
        dim = math.gcd(inner, min(dim, 16))
        d[dim_key], d[heads_key] = dim, inner // dim
        groups = d.get(groups_key)
        if isinstance(groups, int) and groups > 0 and d[heads_key] % groups:
            d[groups_key] = math.gcd(d[heads_key], groups)


def _clamp_feature_layers(d: dict[str, Any]) -> None:
    """Vision feature layers (picked from the tower's hidden states) index the shrunk tower."""
    vision = d.get("vision_config")
    depth = layer_count(vision) if is_config_dict(vision) else None
    if not depth:
        return

    def clamp(layer: Any) -> Any:
        if isinstance(layer, bool) or not isinstance(layer, int):
            return layer
        return min(layer, depth - 1) if layer >= 0 else max(layer, -depth)

    for holder in [d, *(v for v in d.values() if is_config_dict(v) and v is not vision)]:
        for key in ("vision_feature_layer", "vision_feature_layers"):
            value = holder.get(key)
            if isinstance(value, (list, tuple)):
                holder[key] = [clamp(v) for v in value]
            elif isinstance(value, int):
                holder[key] = clamp(value)


def _flat_ropes(rope: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """The rotary settings of a rope dict: itself (key None), or one per layer type."""
    if rope and all(isinstance(v, dict) for v in rope.values()):
        return dict(rope)
    return {None: rope}


def _rotated_half(d: dict[str, Any], rope: dict[str, Any], head_dim: int) -> int:
    factor = rope.get("partial_rotary_factor", d.get("partial_rotary_factor")) or 1.0
    return int(head_dim * factor) // 2


def _fit_mrope_heads(d: dict[str, Any]) -> None:
    """Heads wide enough that their rotated half holds one frequency per multimodal section."""
    ropes = [
        r
        for key in ("rope_parameters", "rope_scaling")
        if isinstance(d.get(key), dict)
        for r in _flat_ropes(d[key]).values()
        if int_list(r.get("mrope_section"))
    ]
    if not ropes:
        return

    def too_narrow(head_dim: int) -> bool:
        return any(_rotated_half(d, r, head_dim) < len(r["mrope_section"]) for r in ropes)

    head_dim, width, heads = d.get("head_dim"), d.get("hidden_size"), d.get("num_attention_heads")
    if isinstance(head_dim, int) and head_dim > 0:
        while too_narrow(head_dim):
            head_dim *= 2
        d["head_dim"] = head_dim
    elif isinstance(width, int) and isinstance(heads, int) and heads > 0:
        while heads > 1 and too_narrow(width // heads):
            heads //= 2
        if not width % heads:
            d["num_attention_heads"] = heads


def _split_evenly(parts: list[int], total: int) -> list[int]:
    """``parts`` rescaled to sum to ``total``, keeping their ratios as far as integers allow."""
    if sum(parts) == total:
        return list(parts)
    scaled = [max(1, v * total // max(sum(parts), 1)) for v in parts]
    scaled[0] += total - sum(scaled)
    return scaled if scaled[0] > 0 else [total] + [0] * (len(parts) - 1)


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
        if is_config_dict(value):
            changed = overrides(before if isinstance(before, dict) else {}, value)
            if before is None or before.get("model_type") != value.get("model_type"):
                changed = value
            elif changed and _same_stages(before, value):
                # A sub-config passed as a dict is rebuilt from its own class defaults: the output
                # stages its parent chose (a neck reading several of them) must travel with it.
                for stage_key in ("out_features", "out_indices"):
                    if before.get(stage_key) is not None and stage_key not in changed:
                        changed[stage_key] = before[stage_key]
            if changed:
                out[key] = {"model_type": value["model_type"], **changed}
        elif value != before:
            out[key] = value
    return out


def _same_stages(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether shrinking kept a backbone's stages (so its output stage names still exist)."""
    depths_before, depths_after = before.get("depths"), after.get("depths")
    return layer_count(before) == layer_count(after) and (
        not isinstance(depths_before, list)
        or (isinstance(depths_after, list) and len(depths_before) == len(depths_after))
    )


def _deep_update(d: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``d`` with ``updates`` merged in, nested dicts merged rather than replaced."""
    out = dict(d)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def config_class(record: ModelRecord) -> type:
    """The model type's config class; a missing optional package raises ``MissingDependency``."""
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
    grouped = _groups_queries(record, default)
    try:
        return _tiny_config(record, cls, default, grouped)
    except Exception as error:
        if grouped:
            # The config's own validators refuse grouped queries (ESMC, ...): as many as query heads.
            with contextlib.suppress(Exception):
                return _tiny_config(record, cls, default, grouped=False)
        raise FactoryError(f"tiny {record.config_class} is invalid: {error}") from error


def _tiny_config(record: ModelRecord, cls: type, default: dict[str, Any], grouped: bool) -> Any:
    tiny = _shrunk(default, grouped)
    changes = _nested_entries(overrides(default, tiny), tiny, record.model_type)
    changes = _keep_init_kwargs(cls, default, changes)
    entry_config = data.model_entry(record.model_type).get("config", {})
    changes = _with_pad_id(_deep_update(changes, entry_config), default)
    config, changes = _validated(cls, changes, default)
    # Fields the config derived from the shrunk ones (or filled in at init) get one more pass.
    derived = config.to_dict()
    wanted = _with_mrope(derived) if _reads(record, "mrope_section", derived) else derived
    again = overrides(derived, _shrunk(wanted, grouped))
    if again:
        changes = _deep_update(_deep_update(changes, again), entry_config)
        config, _ = _validated(cls, changes, default)
    return config


# A config validator's equality: "`codebook_dim` (512) must equal `hidden_size` (32)".
_MUST_EQUAL = re.compile(r"`([\w.]+)` \((-?\d+)\) must equal `([\w.]+)` \((-?\d+)\)")
# "The audio token range ends at 266440, beyond the vocabulary (`text_config.vocab_size` = 99)":
# ids placed by offsets the shrink leaves alone (Apertus 1.5's codebook tokens) need the room.
_BEYOND_VOCAB = re.compile(r"ends at (\d+), beyond the vocabulary \(`([\w.]+)` = \d+\)")
_REPAIRS = 4


def _validated(cls: type, changes: dict[str, Any], default: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The config built from ``changes``, after repairing what its own validators name.

    A release's new config may tie two fields the generic shrink lowered one of (WavTokenizer's
    codebook width to its hidden size): where the validator's message says which field must
    equal which, the first takes the second's value, as the generic shrink keeps widths
    consistent elsewhere; in a sub-config too (Apertus 1.5 nests WavTokenizer's), wherever the
    default config holds both fields. Where it says a range of ids ends past the shrunk
    vocabulary, the vocabulary it names grows to hold it. Anything else it refuses is raised as
    it is.
    """
    for _ in range(_REPAIRS):
        try:
            return cls(**changes), changes
        except Exception as error:  # validators raise their own classes (huggingface_hub's strict ones)
            equal, beyond = _MUST_EQUAL.search(str(error)), _BEYOND_VOCAB.search(str(error))
            if equal is not None:
                field, other, value = equal.group(1), equal.group(3), int(equal.group(4))
                places = _holding(default, field.rpartition(".")[2], other.rpartition(".")[2]) or [()]
                for place in places:
                    changes = _set_path(changes, (*place, *field.split(".")), value)
            elif beyond is not None:
                changes = _set_path(changes, tuple(beyond.group(2).split(".")), int(beyond.group(1)))
            else:
                raise
    return cls(**changes), changes


def _holding(d: dict[str, Any], *names: str, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of the (sub-)config dicts of ``d`` that hold every one of ``names``."""
    found = [at] if all(n in d for n in names) else []
    for key, value in d.items():
        if isinstance(value, dict):
            found += _holding(value, *names, at=(*at, key))
    return found


def _set_path(changes: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``changes`` with the field at ``path`` (through sub-config dicts) set to ``value``."""
    out = dict(changes)
    if len(path) > 1:
        out[path[0]] = _set_path(dict(out.get(path[0]) or {}), path[1:], value)
    else:
        out[path[0]] = value
    return out


def _shrunk(d: dict[str, Any], grouped: bool) -> dict[str, Any]:
    tiny = shrink(d)
    return tiny if grouped else _ungrouped(tiny)


def _groups_queries(record: ModelRecord, default: dict[str, Any]) -> bool:
    """Whether the modeling code shares key/value heads between query heads the standard way
    (it counts ``num_key_value_groups``) and does not decompress them per query head from a
    latent (multi-head latent attention reads ``kv_lora_rank``)."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    modules = {record.module} | {
        model_type_to_module_name(sub["model_type"]) for sub in nested_config_dicts(default)
    }
    sources = [_module_source(module) for module in sorted(modules)]
    return any("num_key_value_groups" in s for s in sources) and not any("kv_lora_rank" in s for s in sources)


def _ungrouped(d: dict[str, Any]) -> dict[str, Any]:
    """As many key/value heads as query heads, at every nesting level."""
    out = {k: _ungrouped(v) if isinstance(v, dict) else v for k, v in d.items()}
    for heads_key, kv_key in _KV_FIELDS:
        if isinstance(out.get(heads_key), int) and isinstance(out.get(kv_key), int):
            out[kv_key] = out[heads_key]
    return out


def _with_pad_id(changes: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """Classification heads need a pad id to find each sequence's last token: 0 where the
    config has none."""
    if changes.get("pad_token_id", 0) is None or (
        "pad_token_id" in default and default["pad_token_id"] is None
    ):
        changes.setdefault("pad_token_id", 0)
        if changes["pad_token_id"] is None:
            changes["pad_token_id"] = 0
    return changes


def _nested_entries(changes: dict[str, Any], tiny: dict[str, Any], own: str) -> dict[str, Any]:
    """The models.toml config of a model type applied where it is nested as a sub-config.

    A backbone or text encoder needs the same fixes inside a parent as on its own. An entry that
    changes the number of stages (list lengths) is left out: the parent selects stages by index.
    """
    out = dict(changes)
    for key, sub in tiny.items():
        if not is_config_dict(sub):
            continue
        before = out.get(key)
        sub_changes = dict(before) if isinstance(before, dict) else {"model_type": sub["model_type"]}
        sub_changes = _nested_entries(sub_changes, sub, own)
        entry = data.model_entry(sub["model_type"]).get("config", {}) if sub["model_type"] != own else {}
        fits = all(
            len(value) == len(sub[name])
            for name, value in entry.items()
            if isinstance(value, list) and isinstance(sub.get(name), list)
        )
        if entry and fits:
            sub_changes = _deep_update(sub_changes, entry)
        if len(sub_changes) > 1 or before is not None:
            out[key] = sub_changes
    return out


def _keep_init_kwargs(cls: type, default: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Sub-config settings the parent passes at init (``sub_configs_defaults``) that shrinking kept.

    A changed sub-config is rebuilt from its dict by its own class, whose defaults would replace
    what the parent sets (a backbone's ``reshape_hidden_states``, its ``out_indices``, ...).
    """
    specs = getattr(cls, "sub_configs_defaults", None) or {}
    for key, spec in specs.items():
        init_kwargs, before = getattr(spec, "init_kwargs", None) or {}, default.get(key)
        sub = changes.get(key)
        if not (isinstance(sub, dict) and isinstance(before, dict) and init_kwargs):
            continue
        if sub.get("model_type", before.get("model_type")) != before.get("model_type"):
            continue
        kept = {k: before[k] for k in init_kwargs if k not in sub and k in before}
        if kept:
            changes = {**changes, key: {**sub, **kept}}
    return changes


@functools.cache
def _module_source(module: str) -> str:
    import importlib

    try:
        return inspect.getsource(importlib.import_module(f"transformers.models.{module}.modeling_{module}"))
    except Exception:
        return ""


def _reads(record: ModelRecord, name: str, config: dict[str, Any] | None = None) -> bool:
    """Whether the model's modeling code, or that of a sub-config's model type, reads a setting
    (possibly with a default of its own)."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    modules = {record.module}
    modules.update(model_type_to_module_name(sub["model_type"]) for sub in nested_config_dicts(config or {}))
    return any(f'"{name}"' in _module_source(module) for module in sorted(modules))


def _with_mrope(d: dict[str, Any]) -> dict[str, Any]:
    """Multimodal rotary sections made explicit where the modeling code has a full-size default."""
    out = {k: _with_mrope(v) if is_config_dict(v) else v for k, v in d.items()}
    rope = out.get("rope_parameters")
    if isinstance(rope, dict) and rope and "num_attention_heads" in out:
        ropes = _flat_ropes(rope)
        for name, flat in ropes.items():
            if "mrope_section" not in flat and ("rope_type" in flat or "rope_theta" in flat):
                ropes[name] = {**flat, "mrope_section": [1, 1, 1]}
        out["rope_parameters"] = ropes.get(None, ropes)
    return out


# -- models ------------------------------------------------------------------------------------


# Optional packages some models need, as their errors name them.
_OPTIONAL = (
    "timm",
    "torchvision",
    "sentencepiece",
    "scipy",
    "librosa",
    "natten",
    "detectron2",
    "pytesseract",
)


def absent_package(error: BaseException) -> str | None:
    """The optional package an ImportError names, if it really is not installed; else None.

    Only then is the error a missing dependency: an ImportError from a package that is there
    (a broken install, a symbol it lacks) is a failure like any other.
    """
    text = str(error)
    # Only a module that was not found names a package; other ImportErrors name a symbol.
    named = [error.name or ""] if isinstance(error, ModuleNotFoundError) else []
    named += re.findall(r"requires (?:the )?`?([\w-]+)`?(?: library)?", text)
    named += [package for package in _OPTIONAL if package in text]
    for name in named:
        top = name.split(".")[0]
        if top and importlib.util.find_spec(top) is None:
            return top
    return None


def _dependency_error(error: BaseException) -> FactoryError:
    text = str(error)
    package = absent_package(error)
    if package is not None:
        return MissingDependency(package, text.splitlines()[0][:200])
    return FactoryError(text.splitlines()[0][:300] if text else type(error).__name__)


def build_model(record: ModelRecord, head_name: str, device: str = "cpu", seed: int = SEED) -> Any:
    """The tiny model of one head, seeded, in eval mode, on ``device``."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    head = record.head(head_name)
    config = tiny_config(record)
    try:
        cls = getattr(transformers, head.class_name)
    except (AttributeError, ImportError) as error:
        raise _dependency_error(error) from error
    config = _as_decoder(_config_for(cls, config), head.mappings)
    torch.manual_seed(seed)
    try:
        model = cls(config)
    except ImportError as error:
        raise _dependency_error(error) from error
    inform_weights(model, seed)
    return model.eval().to(device)


# How far the noise moves a tensor, relative to its root mean square: a norm scale of 1 becomes
# 1 +- 0.1, a weight keeps its spread within 1 %. A tensor that is all zeros (a bias, a gate)
# gets noise of _ZERO_SCALE, the size of a typical initial weight.
_RELATIVE_NOISE = 0.1
_ZERO_SCALE = 0.02
# Learned statistics kept as buffers (batch norm's, frozen or not); every other buffer is derived
# from the config (rotary frequencies, position tables, masks) and left as built.
_STATISTICS = {"running_mean": "shift", "running_var": "scale"}


def inform_weights(model: Any, seed: int = SEED) -> None:
    """Seeded noise on every floating parameter and learned statistic, so each one shows.

    Without it, dropping a bias or a norm's scale changes nothing: they are still at their
    initial 0 and 1. A variance is scaled, never shifted, so it stays positive.
    """
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    # A padding row is structure, not a weight: loading re-initialises it (to zero) where an
    # embedding is tied, so noise there would only show as a save/load difference.
    padding = [
        (m.weight, m.padding_idx, m.weight[m.padding_idx].clone())
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None
    ]
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
            # A frozen parameter is a table the model computes (sinusoidal positions), not a weight.
            if parameter.is_floating_point() and parameter.numel() and parameter.requires_grad:
                _add_noise(parameter, generator)
        for weight, index, row in padding:
            weight[index] = row
        for name, buffer in sorted(model.named_buffers(), key=lambda item: item[0]):
            how = _STATISTICS.get(name.rsplit(".", 1)[-1])
            if how is None or not buffer.is_floating_point() or not buffer.numel():
                continue
            if how == "shift":
                _add_noise(buffer, generator)
            else:
                noise = torch.randn(buffer.shape, generator=generator).to(buffer)
                buffer.mul_((1 + _RELATIVE_NOISE * noise).clamp(min=0.5))


def _add_noise(tensor: Any, generator: Any) -> None:
    import torch

    rms = tensor.detach().float().pow(2).mean().sqrt().item()
    scale = _RELATIVE_NOISE * rms if rms > 0 and math.isfinite(rms) else _ZERO_SCALE
    noise = torch.randn(tensor.shape, generator=generator)
    tensor.add_(noise.to(tensor) * scale)


def _as_decoder(config: Any, mappings: Any) -> Any:
    """A causal-LM head of an encoder family (BERT, RoBERTa, ...) decodes: ``is_decoder`` on.

    Those configs default to a bidirectional encoder, and their causal-LM heads only warn:
    generation would then attend to tokens not yet generated, as no real decoder does.
    """
    if "MODEL_FOR_CAUSAL_LM" not in mappings or getattr(config, "is_decoder", None) is not False:
        return config
    if getattr(config, "is_encoder_decoder", False):
        return config
    config = copy.deepcopy(config)
    config.is_decoder = True
    return config


def _config_for(cls: type, config: Any) -> Any:
    """The config a head class is built from: a composite's sub-config where the class takes one.

    Some heads of a composite model type (Musicgen's decoder-only ``Model`` and ``ForCausalLM``)
    declare a sub-config class (the decoder's) as their ``config_class``.
    """
    wanted = getattr(cls, "config_class", None)
    if not isinstance(wanted, type) or isinstance(config, wanted):
        return config
    for sub in sub_configs(config):
        if isinstance(sub, wanted):
            return sub
    return config
