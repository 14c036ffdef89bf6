"""What a pipeline's result must hold, per task: the content a user of the pipeline relies on.

Each rule takes the built pipeline (its model's config, its tokenizer) and the result of one call,
and returns what is wrong with the result, or None. Labels are the config's ``id2label``; scores
follow the function the task applies by default; text is there; shapes follow the input and the
config. Rules know tasks, never model types.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from hfci.outputs import SEED, compare

__all__ = [
    "Expectation",
    "aggregates_words",
    "classified",
    "continued",
    "embedded",
    "features_of",
    "filled",
    "generates_text",
    "image_features",
    "tagged",
    "transcribed",
]

# A rule on one pipeline result: (pipeline, result) -> the problem, or None.
Expectation = Callable[[Any, Any], "str | None"]

# A float32 softmax over every label sums to 1 up to rounding, far inside this for any label count.
_SUM_TOLERANCE = 1e-4


def _short(value: Any) -> str:
    return str(value)[:200]


def _entries(result: Any, *keys: str) -> str | None:
    """What is wrong with a result that must be a non-empty list of dicts holding ``keys``."""
    if not isinstance(result, list) or not result:
        return f"expected a non-empty list, got {_short(result)}"
    for entry in result:
        if not isinstance(entry, dict) or not set(keys) <= entry.keys():
            return f"expected entries with {', '.join(keys)}, got {_short(entry)}"
    return None


def _config_labels(pipe: Any) -> list[str]:
    return list((getattr(pipe.model.config, "id2label", None) or {}).values())


def _descending(scores: list[float]) -> str | None:
    if any(a < b for a, b in pairwise(scores)):
        return f"scores are not sorted best first: {_short(scores)}"
    return None


def _probabilities(scores: list[float], sum_to_one: bool) -> str | None:
    """Scores each in [0, 1] (NaN is not); with ``sum_to_one``, a full softmax summing to 1."""
    outside = [s for s in scores if not 0.0 <= s <= 1.0]
    if outside:
        return f"scores outside [0, 1]: {_short(outside)}"
    total = math.fsum(scores)
    if sum_to_one and abs(total - 1.0) > _SUM_TOLERANCE:
        return f"softmax scores over all {len(scores)} labels sum to {total:.6g}, not 1"
    return None


def _activation(task: str, config: Any) -> str:
    """The function the task's pipeline applies to the logits when the call names none.

    As transformers' classification pipelines choose it from the config: regression scores are
    raw, multi-label scores are sigmoids, single-label scores a softmax over the labels.
    """
    problem_type = getattr(config, "problem_type", None)
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification":
        return "sigmoid"
    # The text and image pipelines read a single label as a binary score; the audio one softmaxes it.
    if config.num_labels == 1 and task != "audio-classification":
        return "sigmoid"
    return "softmax"


def _scored_as(activation: str, scores: list[float]) -> str | None:
    if activation == "none":
        return None if all(math.isfinite(s) for s in scores) else f"non-finite scores: {_short(scores)}"
    return _probabilities(scores, sum_to_one=activation == "softmax")


def classified(task: str) -> Expectation:
    """Asked for every label: each of the config's labels once, best first, scored as the task scores.

    A softmax's scores sum to 1; sigmoid scores (multi-label, or one label) lie in [0, 1] each.
    """

    def expect(pipe: Any, result: Any) -> str | None:
        problem = _entries(result, "label", "score")
        if problem:
            return problem
        labels = [entry["label"] for entry in result]
        expected = _config_labels(pipe)
        if Counter(labels) != Counter(expected):
            return f"labels {_short(sorted(labels))} are not the config's id2label {_short(sorted(expected))}"
        scores = [float(entry["score"]) for entry in result]
        return _descending(scores) or _scored_as(_activation(task, pipe.model.config), scores)

    return expect


def continued(prompt: str) -> Expectation:
    """Each generated text is the prompt followed by more text (the call returns the full text)."""

    def expect(pipe: Any, result: Any) -> str | None:
        problem = _entries(result, "generated_text")
        if problem:
            return problem
        for entry in result:
            text = entry["generated_text"]
            if not isinstance(text, str) or not text.startswith(prompt):
                return f"generated_text {_short(text)!r} does not start with the prompt {prompt!r}"
            if not text[len(prompt) :].strip():
                return f"generated_text {text!r} adds nothing to the prompt"
        return None

    return expect


def filled(top_k: int) -> Expectation:
    """``top_k`` distinct tokens of the model's vocabulary, best first, their probabilities in [0, 1].

    They are one softmax's probabilities of distinct tokens, so together at most 1.
    """

    def expect(pipe: Any, result: Any) -> str | None:
        problem = _entries(result, "score", "token", "token_str", "sequence")
        if problem:
            return problem
        if len(result) != top_k:
            return f"{len(result)} predictions for top_k={top_k}"
        tokens = [entry["token"] for entry in result]
        vocab = _vocab_size(pipe)
        outside = [t for t in tokens if not isinstance(t, int) or not 0 <= t < vocab]
        if outside:
            return f"token ids {outside} outside the vocabulary of {vocab}"
        if len(set(tokens)) != len(tokens):
            return f"the same token predicted twice: {tokens}"
        scores = [float(entry["score"]) for entry in result]
        problem = _probabilities(scores, sum_to_one=False) or _descending(scores)
        if problem is None and math.fsum(scores) > 1.0 + _SUM_TOLERANCE:
            return f"probabilities of distinct tokens sum past 1: {scores}"
        return problem

    return expect


def _vocab_size(pipe: Any) -> int:
    vocab = getattr(pipe.model.config.get_text_config(), "vocab_size", None)
    return vocab if isinstance(vocab, int) else len(pipe.tokenizer)


def _array(result: Any) -> Any:
    """The result as a float array, or None where it is ragged or holds no numbers."""
    import numpy as np

    try:
        return np.asarray(result, dtype=float)
    except (TypeError, ValueError):
        return None


def _finite(array: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(array).all())


def features_of(pipe: Any, text: str) -> Any:
    """The feature-extraction pipeline's result for ``text``, from the seed ``embedded`` compares at.

    A model whose forward samples (a speech synthesiser's durations) repeats its output only from
    the same seed; whether it should sample is the determinism check's question, not this one's.
    """
    import torch

    torch.manual_seed(SEED)
    return pipe(text)


def _own_features(pipe: Any, text: str) -> Any:
    """The model's first output for the tokens of ``text``, from its own forward at the same seed."""
    import torch

    encoded = pipe.tokenizer(text, return_tensors="pt").to(pipe.model.device)
    torch.manual_seed(SEED)
    with torch.no_grad():
        return pipe.model(**encoded)[0].float().cpu()


def embedded(text: str) -> Expectation:
    """Finite features that are the model's own first output for the tokens of ``text``.

    For a model that keeps one vector per token, that is one hidden-sized vector per token. The
    layout is read from a forward on the same tokens, not assumed: a model's first output may be
    pooled (one vector), a compressed sequence, or wider than hidden_size (streams side by side),
    and the pipeline must hand it over as it is, every token read and no value changed.
    """

    def expect(pipe: Any, result: Any) -> str | None:
        import torch

        array = _array(result)
        if array is None:
            return f"expected a rectangular nested list of numbers, got {_short(result)}"
        if not _finite(array):
            return "non-finite values in the features"
        own = _own_features(pipe, text)
        tokens = len(pipe.tokenizer(text)["input_ids"])
        if array.shape != tuple(own.shape):
            return (
                f"shape {array.shape}, but the model's own output for the {tokens} tokens of {text!r} "
                f"has shape {tuple(own.shape)}"
            )
        problems = compare({"features": own}, {"features": torch.tensor(array, dtype=own.dtype)})
        if problems:
            return f"features differ from the model's own output for the {tokens} tokens of {text!r}: {problems[0]}"
        return None

    return expect


def image_features(pipe: Any, result: Any) -> str | None:
    """A non-empty nested list of finite numbers (its layout is the vision model's own)."""
    array = _array(result)
    if array is None or array.size == 0:
        return f"expected a non-empty rectangular nested list of numbers, got {_short(result)}"
    return None if _finite(array) else "non-finite values in the features"


def _words(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def _covers_words(text: str, entities: list[dict[str, Any]]) -> str | None:
    """Every word of ``text`` in exactly one entity, in order, and no entity holding part of a word.

    An aggregating pipeline still merges adjacent words of one entity type into one group (a
    random model often tags every word alike), so an entity may span words, never split one.
    """
    spans = _words(text)
    first = {start: i for i, (start, _) in enumerate(spans)}
    last = {end: i for i, (_, end) in enumerate(spans)}
    following = 0
    for entity in entities:
        start, end = entity["start"], entity["end"]
        if start not in first or end not in last:
            return f"entity {entity.get('word')!r} at {start}:{end} is not whole words of {text!r}"
        if first[start] != following:
            return f"entities do not cover the words of {text!r} once each, in order: {_short(entities)}"
        following = last[end] + 1
    if following != len(spans):
        return f"entities cover {following} of the {len(spans)} words of {text!r}"
    return None


def _one_per_token(pipe: Any, text: str, entities: list[dict[str, Any]]) -> str | None:
    """One entity per non-special token of ``text``, at that token's position."""
    mask = pipe.tokenizer(text, return_special_tokens_mask=True)["special_tokens_mask"]
    expected = [i for i, special in enumerate(mask) if not special]
    found = [entity.get("index") for entity in entities]
    if found != expected:
        return f"entities at token positions {found}, expected one per non-special token: {expected}"
    return None


def aggregates_words(pipe: Any) -> bool:
    """Whether the token-classification pipeline can gather sub-tokens into words.

    It needs each token's character offsets, which only a fast tokenizer gives.
    """
    return bool(pipe.tokenizer.is_fast)


def tagged(text: str) -> Expectation:
    """Entities named by the config's labels, scored in [0, 1], that account for ``text`` exactly.

    Called with a word-aggregating strategy, the entities are whole words, each word in one; a
    tokenizer that cannot aggregate gives one entity per non-special token instead.
    """

    def expect(pipe: Any, result: Any) -> str | None:
        words = aggregates_words(pipe)
        key = "entity_group" if words else "entity"
        problem = _entries(result, key, "score", "start", "end")
        if problem:
            return problem
        labels = _config_labels(pipe)
        # A group is named by its label's entity type: transformers drops a B-/I- style prefix.
        names = {label.split("-", 1)[-1] for label in labels} if words else set(labels)
        unknown = [entity[key] for entity in result if entity[key] not in names]
        if unknown:
            return f"entity names {_short(unknown)} are not the config's labels {_short(sorted(names))}"
        problem = _probabilities([float(entity["score"]) for entity in result], sum_to_one=False)
        if problem:
            return problem
        return _covers_words(text, result) if words else _one_per_token(pipe, text, result)

    return expect


def generates_text(pipe: Any) -> bool:
    """Whether a speech-recognition pipeline generates its tokens (rather than reading CTC frames)."""
    return not str(getattr(pipe, "type", "")).startswith("ctc")


def _blank_decodes_to_nothing(pipe: Any) -> bool:
    pad = getattr(pipe.tokenizer, "pad_token_id", None)
    return pad is not None and not pipe.tokenizer.decode([pad]).strip()


def transcribed(pipe: Any, result: Any) -> str | None:
    """A dict whose ``text`` is not empty.

    A generating model is asked for word tokens only (as text-generation is), so it has text to
    give. A CTC pipeline decodes one token per frame without skipping special tokens (its
    tokenizer's blank is the pad), so the built tokenizer spells every frame; only a tokenizer
    whose blank decodes to nothing may hear the noise as silence and give no text.
    """
    if not isinstance(result, dict) or not isinstance(result.get("text"), str):
        return f"expected a dict with a text, got {_short(result)}"
    if result["text"].strip():
        return None
    if not generates_text(pipe) and _blank_decodes_to_nothing(pipe):
        return None
    return "the transcription is empty"
