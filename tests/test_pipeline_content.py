"""The pipeline check asserts content: it passes on real tiny models, and fails on planted bugs.

Each planted bug wraps one method of a real transformers pipeline (or rigs a real model's
logits) so the result is wrong the way a user would notice, and the check names what is wrong.
"""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch
import transformers
from transformers import pipelines

from hfci import checks, processors
from hfci.case import TinyCase, build_case
from hfci.catalog import load_catalog

CASES = [
    ("bert", "ForSequenceClassification", "text-classification"),
    ("bert", "ForTokenClassification", "token-classification"),
    ("bert", "ForMaskedLM", "fill-mask"),
    ("bert", "Model", "feature-extraction"),
    # Its forward samples: features are compared with the model's own at the same seed.
    ("vits", "Model", "feature-extraction"),
    ("gpt2", "LMHeadModel", "text-generation"),
    ("vit", "ForImageClassification", "image-classification"),
    ("vit", "Model", "image-feature-extraction"),
    ("wav2vec2", "ForSequenceClassification", "audio-classification"),
    ("wav2vec2", "ForCTC", "automatic-speech-recognition"),
    # A generating speech model: Whisper's pipeline needs timestamp tokens a random model lacks.
    ("speech_to_text", "ForConditionalGeneration", "automatic-speech-recognition"),
]


def case(model_type: str, head: str) -> TinyCase:
    return build_case(load_catalog()[model_type], head)


def run(tiny: TinyCase) -> tuple[object, object]:
    """The recipe's pipeline and its result on the case, as check_pipeline makes them."""
    task = processors.pick_task(tiny.record.head(tiny.head).tasks, tiny.model, tiny.record.category)
    recipe = processors.RECIPES[task]
    pipe = transformers.pipeline(task, model=tiny.model, **recipe.kwargs(tiny))
    return pipe, recipe.call(pipe, tiny)


def plant(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, mutate) -> None:
    """The planted bug: ``cls.method`` returns ``mutate`` of what it returned."""
    original = getattr(cls, method)

    @functools.wraps(original)
    def planted(self, *args, **kwargs):
        return mutate(original(self, *args, **kwargs))

    monkeypatch.setattr(cls, method, planted)


@pytest.mark.parametrize(("model_type", "head", "task"), CASES, ids=[f"{m}/{h}" for m, h, _ in CASES])
def test_the_check_passes_on_real_tiny_models(model_type, head, task):
    assert checks.check_pipeline(case(model_type, head))["task"] == task


def test_all_labels_come_from_the_config_best_first_and_softmax_sums_to_one():
    pipe, result = run(case("bert", "ForSequenceClassification"))
    assert sorted(r["label"] for r in result) == sorted(pipe.model.config.id2label.values())
    assert math.isclose(sum(r["score"] for r in result), 1.0, abs_tol=1e-6)


def test_labels_not_the_configs_fail(monkeypatch):
    def renamed(result):
        return [{**r, "label": r["label"].replace("LABEL_", "class ")} for r in result]

    plant(monkeypatch, pipelines.TextClassificationPipeline, "postprocess", renamed)
    with pytest.raises(checks.CheckFailed, match=r"text-classification pipeline: labels \['class 0'"):
        checks.check_pipeline(case("bert", "ForSequenceClassification"))


def test_a_dropped_label_fails(monkeypatch):
    # Asked for every label, the pipeline hands back only the best one.
    plant(monkeypatch, pipelines.ImageClassificationPipeline, "postprocess", lambda result: result[:1])
    with pytest.raises(
        checks.CheckFailed, match=r"image-classification pipeline: labels .* not the config's id2label"
    ):
        checks.check_pipeline(case("vit", "ForImageClassification"))


def test_scores_that_do_not_sum_to_one_fail(monkeypatch):
    # The planted bug: a sigmoid per label where the single-label config asks for a softmax.
    original = pipelines.AudioClassificationPipeline.postprocess
    monkeypatch.setattr(
        pipelines.AudioClassificationPipeline,
        "postprocess",
        lambda self, outputs, top_k=5, function_to_apply=None: original(self, outputs, top_k, "sigmoid"),
    )
    with pytest.raises(checks.CheckFailed, match=r"softmax scores over all 2 labels sum to .*, not 1"):
        checks.check_pipeline(case("wav2vec2", "ForSequenceClassification"))


def test_a_multi_label_config_is_scored_by_sigmoids_that_need_not_sum_to_one():
    tiny = case("bert", "ForSequenceClassification")
    tiny.model.config.problem_type = "multi_label_classification"
    checks.check_pipeline(tiny)
    _, result = run(tiny)
    assert not math.isclose(sum(r["score"] for r in result), 1.0, abs_tol=1e-3)


def test_scores_out_of_order_fail(monkeypatch):
    plant(monkeypatch, pipelines.FillMaskPipeline, "postprocess", lambda result: result[::-1])
    with pytest.raises(checks.CheckFailed, match="fill-mask pipeline: scores are not sorted best first"):
        checks.check_pipeline(case("bert", "ForMaskedLM"))


def test_a_token_past_the_vocabulary_fails(monkeypatch):
    plant(
        monkeypatch,
        pipelines.FillMaskPipeline,
        "postprocess",
        lambda result: [{**r, "token": r["token"] + 99} for r in result],
    )
    with pytest.raises(checks.CheckFailed, match=r"token ids \[\d+, \d+\] outside the vocabulary of 99"):
        checks.check_pipeline(case("bert", "ForMaskedLM"))


def test_features_of_a_truncated_input_fail(monkeypatch):
    tiny = case("bert", "Model")
    pipe, result = run(tiny)
    tokens = len(pipe.tokenizer("w20 w21 w22 w23 w24")["input_ids"])
    assert (len(result), len(result[0]), len(result[0][0])) == (1, tokens, tiny.model.config.hidden_size)

    def truncated(inputs):
        return {key: value[:, :-1] for key, value in inputs.items()}

    plant(monkeypatch, pipelines.FeatureExtractionPipeline, "preprocess", truncated)
    with pytest.raises(
        checks.CheckFailed, match=r"shape \(1, 4, 32\), but the model's own output for the 5 tokens"
    ):
        checks.check_pipeline(tiny)


def test_features_the_model_did_not_compute_fail(monkeypatch):
    def first_token_zeroed(result):
        return [[[0.0] * len(result[0][0]), *result[0][1:]]]

    plant(monkeypatch, pipelines.FeatureExtractionPipeline, "postprocess", first_token_zeroed)
    with pytest.raises(
        checks.CheckFailed, match="features differ from the model's own output for the 5 tokens"
    ):
        checks.check_pipeline(case("bert", "Model"))


def subword_tokenizer(vocab_size: int, *_, **__) -> transformers.PreTrainedTokenizerFast:
    """A WordPiece tokenizer that splits every word w<n> into sub-tokens: w, ##<digit>, ..."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    pieces = [*processors.SPECIAL_TOKENS, "w", *(f"##{d}" for d in range(10))]
    pieces += [f"filler{i}" for i in range(len(pieces), vocab_size)]
    backend = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    names = ("pad", "unk", "cls", "sep", "mask")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, **{f"{n}_token": f"[{n.upper()}]" for n in names}
    )


@pytest.fixture
def tagger_on_subwords(monkeypatch) -> TinyCase:
    """bert tagging through a sub-word tokenizer, its labels alternating token by token.

    So the first and second pieces of each word disagree: only aggregation into words hides it.
    """
    monkeypatch.setattr(processors, "tokenizer_for", subword_tokenizer)
    tiny = case("bert", "ForTokenClassification")
    forward = tiny.model.forward

    def alternating(**inputs):
        out = forward(**inputs)
        positions = torch.arange(out.logits.shape[1]) % out.logits.shape[-1]
        out.logits = 5.0 * torch.nn.functional.one_hot(positions, out.logits.shape[-1]).float()[None]
        return out

    monkeypatch.setattr(tiny.model, "forward", alternating)
    return tiny


def test_words_are_aggregated_from_their_sub_tokens(tagger_on_subwords):
    pipe, result = run(tagger_on_subwords)
    assert len(pipe.tokenizer("w20")["input_ids"]) == 3  # w ##2 ##0
    # Each word takes its first piece's label, and neighbouring words alternate: one entity a word.
    words = [(f"LABEL_{i % 2}", 4 * i, 4 * i + 3) for i in range(6)]
    assert [(r["entity_group"], r["start"], r["end"]) for r in result] == words
    checks.check_pipeline(tagger_on_subwords)


def test_one_entity_per_sub_token_where_words_were_asked_fails(tagger_on_subwords, monkeypatch):
    # The planted bug: aggregation that ignores word boundaries, one entity per sub-token.
    def per_sub_token(self, entities, strategy):
        return [self.aggregate_word([entity], strategy) for entity in entities]

    monkeypatch.setattr(pipelines.TokenClassificationPipeline, "aggregate_words", per_sub_token)
    with pytest.raises(checks.CheckFailed, match=r"entity 'w' at 0:1 is not whole words of 'w20 w21"):
        checks.check_pipeline(tagger_on_subwords)


def test_entity_names_not_the_configs_fail(monkeypatch):
    def renamed(result):
        return [{**r, "entity_group": "PER"} for r in result]

    plant(monkeypatch, pipelines.TokenClassificationPipeline, "postprocess", renamed)
    with pytest.raises(checks.CheckFailed, match=r"entity names \['PER'.* are not the config's labels"):
        checks.check_pipeline(case("bert", "ForTokenClassification"))


def test_a_tokenizer_without_offsets_gives_one_entity_per_token(monkeypatch):
    # Without offsets the pipeline cannot find words: the check counts tokens instead.
    monkeypatch.setattr(transformers.PreTrainedTokenizerFast, "is_fast", property(lambda self: False))
    tiny = case("bert", "ForTokenClassification")
    _, result = run(tiny)
    assert [r["index"] for r in result] == list(range(6))
    checks.check_pipeline(tiny)
    plant(monkeypatch, pipelines.TokenClassificationPipeline, "postprocess", lambda result: result[1:])
    with pytest.raises(checks.CheckFailed, match=r"entities at token positions \[1, 2, 3, 4, 5\], expected"):
        checks.check_pipeline(tiny)


def test_empty_generated_text_fails(monkeypatch):
    tiny = case("gpt2", "LMHeadModel")
    # The planted bug: generate hands back the prompt, with nothing generated.
    monkeypatch.setattr(tiny.model, "generate", lambda input_ids, **_: input_ids)
    with pytest.raises(checks.CheckFailed, match=r"text-generation pipeline: generated_text .* adds nothing"):
        checks.check_pipeline(tiny)


def test_a_model_that_prefers_special_tokens_still_writes_words(monkeypatch):
    tiny = case("gpt2", "LMHeadModel")
    pipe, _ = run(tiny)
    special = sorted(set(pipe.tokenizer.all_special_ids))
    forward = tiny.model.forward

    def fond_of_specials(**inputs):
        out = forward(**inputs)
        out.logits[..., special] += 100.0
        return out

    monkeypatch.setattr(tiny.model, "forward", fond_of_specials)
    # Asked plainly, such a model leaves no new text: the empty result is real, and the rule says so.
    plain = pipe("w20 w21 w22 w23", max_new_tokens=2, do_sample=False)
    problem = processors.RECIPES["text-generation"].expect(pipe, plain)
    assert problem is not None and "adds nothing to the prompt" in problem
    # The recipe bars special tokens, so the words it writes are the pipeline's to show.
    checks.check_pipeline(tiny)


def test_an_empty_transcription_fails(monkeypatch):
    plant(
        monkeypatch,
        pipelines.AutomaticSpeechRecognitionPipeline,
        "postprocess",
        lambda result: {**result, "text": " "},
    )
    with pytest.raises(
        checks.CheckFailed, match="automatic-speech-recognition pipeline: the transcription is empty"
    ):
        checks.check_pipeline(case("wav2vec2", "ForCTC"))


def test_a_ctc_model_may_hear_noise_as_silence_where_its_blank_decodes_to_nothing(monkeypatch, tmp_path):
    # A checkpoint's CTC tokenizer: its pad is the blank, which decoding drops.
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{chr(97 + i): 5 + i for i in range(26)}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    ctc = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    monkeypatch.setattr(processors, "tokenizer_for", lambda *_, **__: ctc)
    tiny = case("wav2vec2", "ForCTC")
    forward = tiny.model.forward

    def only_blanks(**inputs):
        out = forward(**inputs)
        out.logits = torch.zeros_like(out.logits)
        out.logits[..., ctc.pad_token_id] = 1.0
        return out

    monkeypatch.setattr(tiny.model, "forward", only_blanks)
    _, result = run(tiny)
    assert result == {"text": ""}
    checks.check_pipeline(tiny)
