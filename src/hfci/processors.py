"""Processors built offline for the pipeline check: no hub, no files from anywhere.

A tokenizer is made in memory with the ``tokenizers`` library over the tiny model's vocabulary;
image processors and feature extractors come from their class defaults, resized to the tiny
model's inputs. Each task has a recipe: the processors it needs, a synthetic input, and what the
result must hold for that input (``hfci.pipeline_results``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hfci.case import TinyCase
from hfci.catalog import ModelRecord
from hfci.configs import int_setting
from hfci.inputs import main_input
from hfci.pipeline_results import (
    Expectation,
    aggregates_words,
    classified,
    continued,
    embedded,
    features_of,
    filled,
    generates_text,
    image_features,
    tagged,
    transcribed,
)

__all__ = [
    "RECIPES",
    "SPECIAL_TOKENS",
    "NoRecipe",
    "Recipe",
    "feature_extractor_for",
    "image_processor_for",
    "pick_task",
    "tokenizer_for",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class NoRecipe(Exception):
    """The task cannot be served offline; the message says why."""


def tokenizer_for(
    vocab_size: int, special_ids: dict[str, int] | None = None, append_eos: bool = False
) -> Any:
    """A word-level fast tokenizer whose ids cover exactly ``range(vocab_size)``.

    ``special_ids`` places the model's own special tokens (pad, eos, ...) at the ids its config
    gives them; ``append_eos`` ends every sequence with eos, as seq2seq classifiers require.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 4:
        raise NoRecipe(f"vocabulary of {vocab_size} is too small for a tokenizer")
    placed = {
        f"[{k.upper()}]": v
        for k, v in (special_ids or {}).items()
        if isinstance(v, int) and 0 <= v < vocab_size
    }
    ids = dict(placed)
    free = (i for i in range(vocab_size) if i not in set(ids.values()))
    for token in SPECIAL_TOKENS:
        if token not in ids:
            ids[token] = next(free)
    for i in free:
        ids[f"w{i}"] = i
    backend = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    names = {
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    for kind in ("eos", "bos"):
        if f"[{kind.upper()}]" in ids:
            names[f"{kind}_token"] = f"[{kind.upper()}]"
    if append_eos and "[EOS]" in ids:
        backend.post_processor = processors.TemplateProcessing(
            single="$A [EOS]", special_tokens=[("[EOS]", ids["[EOS]"])]
        )
    # 5.x's default inputs; 4.57's tokenizer also returned token_type_ids, which its pipelines
    # passed on to models that take none (BART, DistilBERT, T5).
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, model_input_names=["input_ids", "attention_mask"], **names
    )


def _class(name: str) -> Any:
    import transformers

    try:
        return getattr(transformers, name)
    except (AttributeError, ImportError) as error:
        raise NoRecipe(f"{name} is unavailable: {str(error).splitlines()[0][:120]}") from error


def image_processor_for(record: ModelRecord, height: int, width: int) -> Any:
    """The model type's image processor with its defaults, resized to the tiny model's images.

    The size is given in the form the processor itself uses (height/width, a shortest or a
    longest edge).
    """
    name = record.processors.get("image_processor")
    if not name:
        raise NoRecipe(f"{record.model_type} has no image processor")
    try:
        processor = _class(name)()
        exact = {"height": height, "width": width}
        keys = set(dict(processor.size or {}))
        edges = {"shortest_edge": min(height, width), "longest_edge": max(height, width)}
        # A processor sized by one edge (SAM's longest, 1024) reads only that key.
        size = {key: edges[key] for key in keys} if len(keys) == 1 and keys <= edges.keys() else exact
        # A processor that pads every image to a fixed size (SAM's 1024 x 1024) pads to the tiny one.
        # (Swin2SR's pad_size is a multiple to pad to, an int, and stays.)
        pad = getattr(processor, "pad_size", None)
        padded = (
            {"pad_size": exact} if pad and not isinstance(pad, int) and set(dict(pad)) == set(exact) else {}
        )
        if getattr(processor, "crop_size", None):
            # Resize then crop to exactly the tiny model's image size, as the processor would.
            return _class(name)(size=size, crop_size=exact, **padded)
        return _class(name)(size=size, do_center_crop=False, **padded)
    except NoRecipe:
        raise
    except Exception as error:
        raise NoRecipe(f"{name} cannot be built with defaults: {str(error)[:120]}") from error


def feature_extractor_for(record: ModelRecord, model: Any = None) -> Any:
    """The model type's feature extractor with its defaults, fitted to the tiny model's audio input.

    Its feature size follows the tiny config's mel bins; a fixed-length extractor (Whisper's)
    pads to the frames the tiny encoder reads instead of 30 seconds.
    """
    name = record.processors.get("feature_extractor")
    if not name:
        raise NoRecipe(f"{record.model_type} has no feature extractor")
    config = getattr(model, "config", None)
    bins = int_setting(config, "num_mel_bins", "input_feat_per_channel")
    try:
        cls = _class(name)
        try:
            extractor = cls(feature_size=bins) if bins else cls()
        except TypeError:
            extractor = cls()
    except NoRecipe:
        raise
    except Exception as error:
        raise NoRecipe(f"{name} cannot be built with defaults: {str(error)[:120]}") from error
    positions = int_setting(config, "max_source_positions")
    if positions and hasattr(extractor, "nb_max_frames") and hasattr(extractor, "hop_length"):
        extractor.nb_max_frames = 2 * positions
        extractor.n_samples = extractor.nb_max_frames * extractor.hop_length
    return extractor


def _words(n: int) -> str:
    # High ids: clear of the special tokens, which sit low in every tiny vocabulary.
    return " ".join(f"w{i}" for i in range(20, 20 + n))


def _image(height: int, width: int) -> Any:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


@dataclass(frozen=True)
class Recipe:
    """How to call one pipeline task offline, and what its result must hold."""

    # The processors the pipeline is built with, and the call of the built pipeline on the case.
    kwargs: Callable[[TinyCase], dict[str, Any]]
    call: Callable[[Any, TinyCase], Any]
    # (pipeline, result) -> what is wrong with the result's content, or None.
    expect: Expectation
    reads: tuple[str, ...] = ("input_ids",)


def _text(case: TinyCase) -> dict[str, Any]:
    text = case.model.config.get_text_config(decoder=True)
    if not isinstance(getattr(text, "vocab_size", None), int):
        raise NoRecipe("the config has no vocab_size (a character-level model needs its own tokenizer)")
    special = {kind: getattr(text, f"{kind}_token_id", None) for kind in ("pad", "eos", "bos")}
    special = {k: v[0] if isinstance(v, list) and v else v for k, v in special.items()}
    encoder_decoder = bool(getattr(case.model.config, "is_encoder_decoder", False))
    return {"tokenizer": tokenizer_for(text.vocab_size, special, append_eos=encoder_decoder)}


def _vision_size(case: TinyCase) -> tuple[int, int]:
    """(height, width) of the images the case's model reads."""
    pixels = case.inputs.get("pixel_values")
    pixel = tuple(pixels.shape) if pixels is not None else None
    if pixel and len(pixel) == 5:
        raise NoRecipe("the model reads video clips, which image pipelines do not make")
    if pixel:
        return pixel[-2], pixel[-1]
    raise NoRecipe("the tiny model reads no pixel_values")


def _vision(case: TinyCase) -> dict[str, Any]:
    return {"image_processor": image_processor_for(case.record, *_vision_size(case))}


def _audio(case: TinyCase) -> dict[str, Any]:
    return {"feature_extractor": feature_extractor_for(case.record, case.model)}


def _audio_text(case: TinyCase) -> dict[str, Any]:
    return {**_audio(case), **_text(case)}


def _waveform() -> Any:
    import numpy as np

    return np.random.default_rng(0).standard_normal(16000).astype("float32")


# The texts the text pipelines read, each checked against what the pipeline made of it.
_EMBEDDED = _words(5)
_TAGGED = _words(6)
_PROMPT = _words(4)
_FILLED_TOP_K = 2
# Few new tokens: the checks ask for text, not for long text.
_NEW_TOKENS = 2


def _suppressible(pipe: Any) -> list[int]:
    """The tokenizer's special ids, less those generation forces (it refuses to force a suppressed id)."""
    config = getattr(pipe, "generation_config", None) or pipe.model.generation_config
    forced: set[int] = set()
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        value = getattr(config, name, None)
        forced.update(value if isinstance(value, list) else [value] if isinstance(value, int) else [])
    return sorted(set(pipe.tokenizer.all_special_ids) - forced)


def _word_tokens_only(pipe: Any) -> dict[str, Any]:
    """Generation that makes ``_NEW_TOKENS`` words: no stop token and no special token.

    A random model emits special tokens (decoded to nothing) and its stop token (ending the text
    early) as readily as any other, which would leave no new text through no fault of the pipeline.
    A token generation forces (a forced stop at the last step) stays: the first new token is a word.
    """
    return {
        "max_new_tokens": _NEW_TOKENS,
        "min_new_tokens": _NEW_TOKENS,
        "suppress_tokens": _suppressible(pipe),
        "do_sample": False,
    }


def _tag(pipe: Any, case: TinyCase) -> Any:
    # ignore_labels=[]: by default the pipeline drops words tagged "O", and every word must show.
    if aggregates_words(pipe):
        return pipe(_TAGGED, aggregation_strategy="first", ignore_labels=[])
    return pipe(_TAGGED, ignore_labels=[])


def _transcribe(pipe: Any, case: TinyCase) -> Any:
    # A CTC pipeline reads frames and generates nothing: generation arguments are not its own.
    return pipe(_waveform(), **_word_tokens_only(pipe)) if generates_text(pipe) else pipe(_waveform())


RECIPES: dict[str, Recipe] = {
    "feature-extraction": Recipe(_text, lambda p, c: features_of(p, _EMBEDDED), embedded(_EMBEDDED)),
    "fill-mask": Recipe(
        _text,
        lambda p, c: p(f"{_words(3)} {p.tokenizer.mask_token} {_words(2)}", top_k=_FILLED_TOP_K),
        filled(_FILLED_TOP_K),
    ),
    "text-classification": Recipe(
        _text, lambda p, c: p(_words(6), top_k=None), classified("text-classification")
    ),
    "token-classification": Recipe(_text, _tag, tagged(_TAGGED)),
    "text-generation": Recipe(_text, lambda p, c: p(_PROMPT, **_word_tokens_only(p)), continued(_PROMPT)),
    "image-classification": Recipe(
        _vision,
        lambda p, c: p(_image(*_vision_size(c)), top_k=p.model.config.num_labels),
        classified("image-classification"),
        ("pixel_values",),
    ),
    "image-feature-extraction": Recipe(
        _vision, lambda p, c: p(_image(*_vision_size(c))), image_features, ("pixel_values",)
    ),
    "audio-classification": Recipe(
        _audio,
        lambda p, c: p(_waveform(), top_k=None),
        classified("audio-classification"),
        ("input_values", "input_features"),
    ),
    "automatic-speech-recognition": Recipe(
        _audio_text, _transcribe, transcribed, ("input_values", "input_features")
    ),
}


def pick_task(tasks: tuple[str, ...], model: Any, category: str = "") -> str:
    """The first of a head's tasks with an offline recipe for what the model reads.

    ``category`` is the model type's (from the catalog): a multimodal base model is served by no
    one-modality generic pipeline.
    """
    main = main_input(model)
    # An encoder-decoder's base model needs decoder inputs no feature-extraction pipeline gives.
    seq2seq_base = getattr(model.config, "is_encoder_decoder", False) and type(model).__name__.endswith(
        "Model"
    )
    # A multimodal base model needs every modality at once; a one-modality pipeline cannot feed it.
    multimodal_base = type(model).__name__.endswith("Model") and category == "multimodal"
    for task in tasks:
        recipe = RECIPES.get(task)
        generic = task in ("feature-extraction", "image-feature-extraction")
        if recipe and main in recipe.reads and not ((seq2seq_base or multimodal_base) and generic):
            return task
    if not tasks:
        raise NoRecipe("the head serves no pipeline task with the processors it has")
    raise NoRecipe(f"no offline recipe for {', '.join(tasks)} on a model reading {main}")
