"""Each check fails on a planted bug in a real tiny transformers model, and skips what it cannot judge."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hfci import checks
from hfci.case import build_case
from hfci.catalog import load_catalog


@pytest.fixture
def gpt2():
    return build_case(load_catalog()["gpt2"], "LMHeadModel")


def test_save_load_catches_a_weight_the_checkpoint_leaves_out(gpt2, monkeypatch):
    reference = checks.check_forward(gpt2)
    checks.check_save_load(gpt2, reference)
    # The planted bug: the checkpoint drops one tensor, and from_pretrained re-initialises it.
    save = gpt2.model.save_pretrained

    def lossy(directory, **options):
        state = {k: v for k, v in gpt2.model.state_dict().items() if k != "transformer.h.0.mlp.c_fc.weight"}
        return save(directory, state_dict=state, **options)

    monkeypatch.setattr(gpt2.model, "save_pretrained", lossy)
    with pytest.raises(checks.CheckFailed, match="reloaded model differs: logits: max abs diff"):
        checks.check_save_load(gpt2, reference)


def test_generate_catches_a_generate_that_stops_early_or_drops_rows(gpt2, monkeypatch):
    checks.check_generate(gpt2)
    monkeypatch.setattr(gpt2.model, "generate", lambda **inputs: inputs["input_ids"])
    with pytest.raises(checks.CheckFailed, match=r"generated length 8 < prompt 8 \+ 3"):
        checks.check_generate(gpt2)
    monkeypatch.setattr(gpt2.model, "generate", lambda **inputs: inputs["input_ids"][:1])
    with pytest.raises(checks.CheckFailed, match="generated batch 1 != 2"):
        checks.check_generate(gpt2)
    monkeypatch.setattr(gpt2.model, "generate", lambda **inputs: {"logits": inputs["input_ids"]})
    with pytest.raises(checks.CheckFailed, match="generate returned dict without sequences"):
        checks.check_generate(gpt2)


def test_generate_skips_a_head_that_does_not_generate():
    case = build_case(load_catalog()["gpt2"], "ForSequenceClassification")
    with pytest.raises(checks.CheckSkipped, match="not a generative head"):
        checks.check_generate(case)


def test_forward_catches_logits_of_the_wrong_batch_or_vocabulary(gpt2, monkeypatch):
    forward = gpt2.model.forward
    monkeypatch.setattr(gpt2.model, "forward", lambda **inputs: {"logits": forward(**inputs).logits[:1]})
    with pytest.raises(checks.CheckFailed, match="logits batch 1 != input batch 2"):
        checks.check_forward(gpt2)
    monkeypatch.setattr(
        gpt2.model, "forward", lambda **inputs: {"logits": forward(**inputs).logits[..., :-1]}
    )
    with pytest.raises(checks.CheckFailed, match=r"logits shape \(2, 8, \d+\), expected \(2, 8, \d+\)"):
        checks.check_forward(gpt2)
    monkeypatch.setattr(gpt2.model, "forward", lambda **inputs: {})
    with pytest.raises(checks.CheckFailed, match="forward returned no tensors"):
        checks.check_forward(gpt2)


def test_device_parity_catches_a_device_that_computes_otherwise(gpt2):
    other = build_case(gpt2.record, gpt2.head)
    checks.check_device_parity(other, gpt2)
    with torch.no_grad():
        other.model.lm_head.weight.mul_(1.01)  # the planted bug: one matmul off by 1 %
    with pytest.raises(checks.CheckFailed, match="cpu differs from cpu: logits: max abs diff"):
        checks.check_device_parity(dataclasses.replace(other), gpt2)


def _forgetful_update(update):
    """A cache that stores every step but hands attention only the newest keys and values."""

    def planted(self, key_states, value_states, *args, **kwargs):
        update(self, key_states, value_states, *args, **kwargs)
        return key_states, value_states

    return planted


def _evicting_update(update):
    """A cache that loses the first position it holds, as a wrong window eviction would."""

    def planted(self, key_states, value_states, *args, **kwargs):
        keys, values = update(self, key_states, value_states, *args, **kwargs)
        return (
            (keys[..., 1:, :], values[..., 1:, :])
            if keys.shape[-2] > key_states.shape[-2]
            else (keys, values)
        )

    return planted


@pytest.mark.parametrize(
    ("model_type", "head"),
    [("gpt2", "LMHeadModel"), ("llama", "ForCausalLM"), ("t5", "ForConditionalGeneration")],
)
@pytest.mark.parametrize("plant", [_forgetful_update, _evicting_update])
def test_cache_catches_a_broken_cache(model_type, head, plant, monkeypatch):
    from transformers import cache_utils

    case = build_case(load_catalog()[model_type], head)
    checks.check_cache(case)
    monkeypatch.setattr(cache_utils.DynamicLayer, "update", plant(cache_utils.DynamicLayer.update))
    with pytest.raises(checks.CheckFailed, match=r"with the cache|cached decoding step"):
        checks.check_cache(case)


def test_generate_catches_a_decoder_that_ignores_the_requested_length(gpt2, monkeypatch):
    generate = gpt2.model.generate
    monkeypatch.setattr(gpt2.model, "generate", lambda **inputs: generate(**inputs, max_new_tokens=5))
    with pytest.raises(checks.CheckFailed, match=r"generated length 13 > prompt 8 \+ 3"):
        checks.check_generate(gpt2)


def _attention_without_mask(case, monkeypatch):
    """An attention kernel that drops the mask it is handed (causal models stay causal)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def planted(module, query, key, value, attention_mask, **kwargs):
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)

    AttentionInterface.register("hfci_planted_no_mask", planted)
    case.model.set_attn_implementation("hfci_planted_no_mask")


def _first_row_everywhere(case, monkeypatch):
    """Every row of the batch gets the first row's logits."""
    forward = case.model.forward

    def planted(**inputs):
        output = forward(**inputs)
        output["logits"] = output["logits"][:1].expand_as(output["logits"]).clone()
        return output

    monkeypatch.setattr(case.model, "forward", planted)


@pytest.mark.parametrize(
    ("model_type", "head"),
    [("bert", "ForMaskedLM"), ("llama", "ForCausalLM"), ("t5", "ForConditionalGeneration")],
)
@pytest.mark.parametrize("plant", [_attention_without_mask, _first_row_everywhere])
def test_padding_catches_an_ignored_mask_and_a_batch_mix_up(model_type, head, plant, monkeypatch):
    case = build_case(load_catalog()[model_type], head)
    checks.check_padding(case)
    plant(case, monkeypatch)
    with pytest.raises(checks.CheckFailed, match=r"in a batch differ from the row alone: .*logits"):
        checks.check_padding(case)


def test_padding_skips_what_is_no_text_batch():
    case = build_case(load_catalog()["vit"], "Model")
    with pytest.raises(checks.CheckSkipped, match="not a text batch with an attention mask"):
        checks.check_padding(case)
