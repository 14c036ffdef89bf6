"""Configs: walking a model config and its nested sub-configs, as a dict or as a config object.

Two forms are walked. While shrinking, a config is a plain dict (``to_dict()``), and a value
holding a ``model_type`` is a nested sub-config. Once built, a config is a ``PreTrainedConfig``
whose attributes may hold further config objects (a vision tower's, a text model's, ...).

Importing this module imports no torch and no transformers: they load when a config object
is walked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "TOKEN_ID_SUFFIXES",
    "features",
    "find_setting",
    "int_list",
    "int_setting",
    "is_config_dict",
    "layer_count",
    "nested_config_dicts",
    "special_token_ids",
    "sub_configs",
    "text_config",
]

# The fields a config may count its layers in, in the order they are looked up.
_LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "decoder_layers")

# Token id fields end with one of these: the ids a tokenizer reserves, and the placeholders.
TOKEN_ID_SUFFIXES = ("_token_id", "_token_index", "_token_ids")


# -- config dicts ------------------------------------------------------------------------------


def is_config_dict(value: Any) -> bool:
    """Whether a value of a config dict is itself a (sub-)config: a dict naming its model type."""
    return isinstance(value, dict) and "model_type" in value


def int_list(value: Any) -> bool:
    """Whether a value is a list or tuple of plain integers (booleans are not integers here)."""
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def layer_count(d: dict[str, Any]) -> int | None:
    """The number of layers a config dict gives, under the first layer field it sets, or None."""
    for key in _LAYER_KEYS:
        if isinstance(d.get(key), int):
            return d[key]
    return None


def nested_config_dicts(d: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every sub-config dict nested in a config dict, at any depth (not the dict itself)."""
    queue = [d]
    while queue:
        current = queue.pop()
        for value in current.values():
            if is_config_dict(value):
                yield value
                queue.append(value)


# -- config objects ----------------------------------------------------------------------------


def sub_configs(config: Any) -> list[Any]:
    """The config and every nested config, outermost first."""
    # 5.x's name; 4.57 has only PretrainedConfig, which 5.x keeps as an alias.
    from transformers import PretrainedConfig

    found, queue = [], [config]
    while queue:
        current = queue.pop(0)
        found.append(current)
        for value in vars(current).values():
            if isinstance(value, PretrainedConfig):
                queue.append(value)
    return found


def find_setting(config: Any, *keys: str, default: Any = None) -> Any:
    """The first of ``keys`` set (not None) on the config or any of its sub-configs.

    The config comes first, then its sub-configs outermost first; at each one, ``keys`` in order.
    """
    for sub in sub_configs(config):
        for key in keys:
            value = getattr(sub, key, None)
            if value is not None:
                return value
    return default


def int_setting(config: Any, *keys: str) -> int | None:
    """The first of ``keys`` that is an integer on the config or one of its direct sub-configs.

    Unlike :func:`find_setting`, only one level down, and any object with ``to_dict`` and a
    ``model_type`` counts as a sub-config; None when the config is None.
    """
    if config is None:
        return None
    subs = [config, *(v for v in vars(config).values() if hasattr(v, "to_dict") and hasattr(v, "model_type"))]
    for sub in subs:
        for key in keys:
            value = getattr(sub, key, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def text_config(config: Any) -> Any:
    """The config of the model's text decoder, or the config itself if it names none."""
    try:
        return config.get_text_config(decoder=True)
    except Exception:
        return config


def special_token_ids(config: Any) -> set[int]:
    """Every token id a config (or a sub-config) reserves, set explicitly or by its class."""
    found: set[int] = set()
    for sub in sub_configs(config):
        for key, value in sub.to_diff_dict().items() if hasattr(sub, "to_diff_dict") else ():
            if key.endswith(TOKEN_ID_SUFFIXES):
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(v, int) and not isinstance(v, bool):
                        found.add(v)
        for key in dir(sub):
            # Class-level ids (properties, defaults) are single ids, never lists.
            if key.endswith(("_token_id", "_token_index")) and not key.startswith("_"):
                value = getattr(sub, key, None)
                if isinstance(value, int) and not isinstance(value, bool):
                    found.add(value)
    return found


# Paths a real model takes that a tiny config could skip, as the config declares them.
_KV_HEADS = ("num_key_value_heads", "num_kv_heads", "multi_query_group_num")
_EXPERTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
_TOP_K = ("num_experts_per_tok", "num_experts_per_token", "moe_k", "top_k_experts")


def features(config: Any, seq_len: int) -> list[str]:
    """Which of grouped-query attention, a sliding window shorter than ``seq_len``, mixed layer
    types and mixture-of-experts routing (top-k below the expert count) a config exercises."""
    found = set()
    for sub in sub_configs(config):
        values = vars(sub)
        heads = values.get("num_attention_heads")
        kv = next((values[k] for k in _KV_HEADS if isinstance(values.get(k), int)), None)
        if isinstance(heads, int) and kv is not None and 0 < kv < heads:
            found.add("grouped-query attention")
        window = values.get("sliding_window")
        if isinstance(window, int) and 0 < window < seq_len:
            found.add("sliding window")
        kinds = values.get("layer_types")
        if isinstance(kinds, list) and len(set(map(str, kinds))) > 1:
            found.add("mixed layer types")
        experts = next((values[k] for k in _EXPERTS if isinstance(values.get(k), int)), None)
        top_k = next((values[k] for k in _TOP_K if isinstance(values.get(k), int)), None)
        if experts and top_k and 0 < top_k < experts:
            found.add("mixture of experts")
    return sorted(found)
