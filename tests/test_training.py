"""The training check and training parity, on real tiny models, and the bugs they catch."""

from __future__ import annotations

import pytest
import torch

from hfci import checks, runners, training
from hfci.case import build_case
from hfci.catalog import load_catalog


def _case(model_type: str, head: str):
    return build_case(load_catalog()[model_type], head)


@pytest.fixture
def gpt2():
    return _case("gpt2", "LMHeadModel")


@pytest.mark.parametrize(
    ("model_type", "head", "names"),
    [
        ("gpt2", "LMHeadModel", {"labels"}),
        ("bert", "ForMaskedLM", {"labels"}),
        ("bert", "ForPreTraining", {"labels", "next_sentence_label"}),
        ("bert", "ForSequenceClassification", {"labels"}),
        ("bert", "ForTokenClassification", {"labels"}),
        ("bert", "ForQuestionAnswering", {"start_positions", "end_positions"}),
        ("bert", "ForMultipleChoice", {"labels"}),
        ("t5", "ForConditionalGeneration", {"labels"}),
        ("vit", "ForImageClassification", {"labels"}),
        ("wav2vec2", "ForCTC", {"labels"}),
    ],
)
def test_each_head_trains_on_the_labels_of_its_task(model_type, head, names):
    case = _case(model_type, head)
    inputs = training.labelled(case.model, case.record.head(head).mappings, case.inputs)
    assert names <= inputs.keys()
    measured = checks.check_training(case)
    before, after = measured["loss"]
    assert after < before
    assert measured["parameters"] > measured["unreached"]


def test_the_case_model_is_left_as_the_other_checks_read_it(gpt2):
    reference = checks.check_forward(gpt2)
    state = {k: v.clone() for k, v in gpt2.model.state_dict().items()}
    checks.check_training(gpt2)
    assert not gpt2.model.training
    assert all(torch.equal(state[k], v) for k, v in gpt2.model.state_dict().items())
    checks.check_determinism(gpt2, reference)


def test_labels_of_a_seq2seq_head_replace_its_decoder_ids():
    case = _case("t5", "ForConditionalGeneration")
    inputs = training.labelled(case.model, case.record.head(case.head).mappings, case.inputs)
    assert not any(k.startswith("decoder_") for k in inputs)
    assert torch.equal(inputs["labels"], case.inputs["decoder_input_ids"])


def test_a_head_without_labels_is_skipped_with_its_reason():
    with pytest.raises(checks.CheckSkipped, match=r"no label recipe for the head's mappings \(MODEL"):
        checks.check_training(_case("bert", "Model"))


def _on_gradient(case, name: str, change):
    """The planted bug: the backward of parameter ``name`` computes ``change(grad)``."""
    original = training.trained_copy

    def planted(model):
        copy = original(model)
        dict(copy.named_parameters())[name].register_hook(change)
        return copy

    return planted


def test_training_catches_non_finite_and_zeroed_gradients(gpt2, monkeypatch):
    name = "transformer.h.0.mlp.c_fc.weight"
    monkeypatch.setattr(training, "trained_copy", _on_gradient(gpt2, name, lambda g: g * float("nan")))
    with pytest.raises(checks.CheckFailed, match=f"non-finite gradients in 1 parameters: {name}"):
        checks.check_training(gpt2)
    monkeypatch.setattr(training, "trained_copy", _on_gradient(gpt2, name, torch.zeros_like))
    with pytest.raises(checks.CheckFailed, match=f"exact zeros for 1 parameters the loss depends on: {name}"):
        checks.check_training(gpt2)


def test_a_zero_gradient_the_loss_is_invariant_to_is_right():
    # A multiple-choice classifier's bias adds the same to every choice before their softmax.
    case = _case("bert", "ForMultipleChoice")
    inputs = training.labelled(case.model, case.record.head(case.head).mappings, case.inputs)
    step = training.gradients(training.trained_copy(case.model), inputs)
    assert not step.grads["classifier.bias"].any()
    assert not training.loss_depends_on(case.model, inputs, ["classifier.bias"], float(step.loss))
    checks.check_training(case)


def test_training_catches_a_backward_that_climbs(gpt2, monkeypatch):
    original = training.trained_copy

    def climbing(model):
        copy = original(model)
        for parameter in copy.parameters():
            parameter.register_hook(torch.neg)
        return copy

    monkeypatch.setattr(training, "trained_copy", climbing)
    with pytest.raises(checks.CheckFailed, match="no SGD step along the gradients lowers the loss"):
        checks.check_training(gpt2)


def test_training_parity_passes_for_sdpa_and_catches_a_gradient_lost(gpt2, monkeypatch):
    checks.check_parity(gpt2, "sdpa")
    train = runners.sdpa.train

    def loses_one(model, inputs):
        step = train(model, inputs)
        step.grads["transformer.h.1.ln_2.weight"] = None
        return step

    monkeypatch.setattr(runners.sdpa, "train", loses_one)
    with pytest.raises(
        checks.CheckFailed, match=r"no gradient for 1 parameters eager trains: transformer\.h\.1\.ln_2"
    ):
        checks.check_parity(gpt2, "sdpa")

    def scaled(model, inputs):
        step = train(model, inputs)
        step.grads["transformer.wte.weight"] = step.grads["transformer.wte.weight"] * 1.001
        return step

    monkeypatch.setattr(runners.sdpa, "train", scaled)
    with pytest.raises(
        checks.CheckFailed,
        match=r"sdpa training differs from eager: grad transformer\.wte\.weight by 0\.001 of its scale",
    ):
        checks.check_parity(gpt2, "sdpa")


def test_greedy_parity_catches_a_runner_that_picks_other_tokens(gpt2, monkeypatch):
    sdpa = runners.sdpa

    def second_best(model, inputs):
        output = sdpa(model, inputs)
        logits = output.logits.clone()
        last = logits[:, -1]
        # The best and second-best logits of the last position swap, once decoding has grown
        # the prompt: the case's own inputs, padded batches and cached step stay right.
        if inputs["input_ids"].shape[1] > 8:
            top = last.topk(2, dim=-1).indices
            rows = torch.arange(last.shape[0])
            last[rows, top[:, 0]], last[rows, top[:, 1]] = last[rows, top[:, 1]], last[rows, top[:, 0]]
        output.logits = logits
        return output

    monkeypatch.setitem(runners.BUILTIN, "sdpa", second_best)
    with pytest.raises(checks.CheckFailed, match="sdpa decodes greedy token 1 as"):
        checks.check_parity(gpt2, "sdpa")


def test_a_ctc_head_counting_lengths_from_a_padding_mask_gets_one_over_its_samples():
    import torch

    from hfci.training import _frames_mask

    class PaddingMasked(torch.nn.Module):
        def forward(self, input_values, padding_mask=None, labels=None):
            raise AssertionError("not called")

    class AttentionMasked(torch.nn.Module):
        def forward(self, input_values, attention_mask=None, labels=None):
            raise AssertionError("not called")

    channelled = {"input_values": torch.zeros(2, 1, 1600)}
    mask = _frames_mask(PaddingMasked(), channelled)
    assert list(mask) == ["padding_mask"] and mask["padding_mask"].shape == (2, 1600)
    assert _frames_mask(AttentionMasked(), {"input_values": torch.zeros(2, 1600)})[
        "attention_mask"
    ].shape == (2, 1600)
    # A mask the inputs already carry is kept.
    assert _frames_mask(PaddingMasked(), {**channelled, "padding_mask": mask["padding_mask"]}) == {}
