"""Fast tests of the factory: shrinking rules, consistency repairs, overrides, real tiny builds."""

from __future__ import annotations

import pytest

from hfci import factory
from hfci.case import build_case
from hfci.project import failure_problem

RULES = {
    "ints": {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2},
    "list_caps": {"depths": 1},
    "list_widths": {"hidden_sizes": 16},
    "derived_from": {"num_layers": "depths"},
    "suffix_ints": {"_hidden_size": 32},
    "fill_none": {"prediction_length": 4},
}


def test_shrink_lowers_known_sizes_and_recurses():
    default = {
        "model_type": "outer",
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_hidden_layers": 24,
        "text_config": {"model_type": "inner", "hidden_size": 768, "num_attention_heads": 12},
    }
    tiny = factory.shrink(default, RULES)
    assert tiny["hidden_size"] == 32 and tiny["num_hidden_layers"] == 2
    assert tiny["num_key_value_heads"] == 2
    assert tiny["text_config"]["hidden_size"] == 32
    assert tiny["text_config"]["num_attention_heads"] == 4


def test_shrink_groups_queries_where_the_config_counts_key_value_heads():
    for kv in (16, None, 8):
        tiny = factory.shrink(
            {"hidden_size": 1024, "num_attention_heads": 16, "num_key_value_heads": kv}, RULES
        )
        assert (tiny["num_attention_heads"], tiny["num_key_value_heads"]) == (4, 2)
    assert "num_key_value_heads" not in factory.shrink(
        {"hidden_size": 1024, "num_attention_heads": 16}, RULES
    )


def test_shrink_lists_layers_suffixes_and_none():
    default = {
        "hidden_sizes": [64, 128, 256],
        "depths": [2, 2, 6],
        "num_layers": 3,
        "num_hidden_layers": 4,
        "layer_types": ["a", "b", "a", "b"],
        "text_hidden_size": 4608,
        "prediction_length": None,
    }
    tiny = factory.shrink(default, RULES)
    assert tiny["hidden_sizes"] == [16, 32, 64]
    assert tiny["depths"] == [1, 1, 1]
    assert tiny["num_layers"] == 3  # derived from depths: left alone
    assert tiny["layer_types"] == ["a", "b"]
    assert tiny["text_hidden_size"] == 32
    assert tiny["prediction_length"] == 4


def test_shrink_keeps_a_layer_of_every_kind_and_renumbers_per_layer_tables():
    default = {
        "num_hidden_layers": 6,
        "layer_types": ["sliding", "sliding", "sliding", "full", "sliding", "full"],
        "windows": [8, 8, 8, None, 8, None],
        "per_layer_config": {"03": {"window": None}, "05": {"window": None}},
        "num_kv_shared_layers": 3,
    }
    tiny = factory.shrink(default, RULES)
    assert tiny["layer_types"] == ["sliding", "full"]
    assert tiny["windows"] == [8, None]
    assert tiny["per_layer_config"] == {"01": {"window": None}}
    # Shared layers need an earlier producer of every kind: none fit in two layers.
    assert tiny["num_kv_shared_layers"] == 0


def test_make_consistent_tiles_mamba_heads_over_the_inner_width():
    fixed = factory.make_consistent(
        {"hidden_size": 32, "mamba_expand": 2, "mamba_n_heads": 128, "mamba_d_head": 64, "mamba_n_groups": 8}
    )
    assert fixed["mamba_n_heads"] * fixed["mamba_d_head"] == 64
    assert fixed["mamba_n_heads"] % fixed["mamba_n_groups"] == 0
    explicit = {
        "hidden_size": 32,
        "mamba_expand": 2,
        "mamba_d_ssm": 1024,
        "mamba_n_heads": 128,
        "mamba_d_head": 8,
    }
    assert factory.make_consistent(explicit) == explicit


def test_make_consistent_repairs_heads_ids_and_rope_sections():
    fixed = factory.make_consistent(
        {
            "hidden_size": 32,
            "num_attention_heads": 12,
            "num_key_value_heads": 3,
            "vocab_size": 99,
            "eos_token_id": 50256,
            "bos_token_id": 50256,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24]},
        }
    )
    assert 32 % fixed["num_attention_heads"] == 0
    assert fixed["num_attention_heads"] % fixed["num_key_value_heads"] == 0
    assert fixed["eos_token_id"] < 99 and fixed["bos_token_id"] < 99
    head_dim = 32 // fixed["num_attention_heads"]
    assert sum(fixed["rope_parameters"]["mrope_section"]) == head_dim // 2


def test_make_consistent_places_composite_token_ids_in_the_text_vocabulary():
    fixed = factory.make_consistent(
        {"image_token_id": 32000, "text_config": {"model_type": "llama", "vocab_size": 99}}
    )
    assert fixed["image_token_id"] < 99


def test_overrides_keep_only_changes_and_sub_config_types():
    default = {"a": 1, "b": 2, "sub": {"model_type": "x", "c": 3, "d": 4}}
    tiny = {"a": 1, "b": 5, "sub": {"model_type": "x", "c": 3, "d": 1}}
    assert factory.overrides(default, tiny) == {"b": 5, "sub": {"model_type": "x", "d": 1}}


@pytest.fixture(scope="module")
def catalog():
    from hfci.catalog import load_catalog

    return load_catalog()


CRITICAL = [
    ("bert", "ForMaskedLM"),
    ("gpt2", "LMHeadModel"),
    ("llama", "ForCausalLM"),
    ("t5", "ForConditionalGeneration"),
    ("bart", "ForSequenceClassification"),
    ("vit", "ForImageClassification"),
    ("wav2vec2", "ForCTC"),
    ("clip", "Model"),
]


@pytest.mark.parametrize(("model_type", "head"), CRITICAL)
def test_critical_models_build_and_run_on_cpu(catalog, model_type, head):
    import torch

    case = build_case(catalog[model_type], head)
    assert case.parameters <= 5_000_000
    with torch.inference_mode():
        first = case.model(**case.inputs)
        second = case.model(**case.inputs)
    logits = first.logits if hasattr(first, "logits") else first[0]
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, second.logits if hasattr(second, "logits") else second[0])


def test_vision_language_inputs_carry_one_placeholder_per_image_feature(catalog):
    import torch

    case = build_case(catalog["llava"], "Model")
    token = case.model.config.image_token_id
    assert (case.inputs["input_ids"] == token).sum() > 0
    with torch.inference_mode():
        case.model(**case.inputs)


def test_time_series_inputs_are_derived_from_the_config(catalog):
    case = build_case(catalog["time_series_transformer"], "Model")
    config = case.model.config
    length = config.context_length + max(config.lags_sequence)
    assert case.inputs["past_values"].shape[1] == length
    assert case.inputs["past_time_features"].shape[-1] == config.num_time_features


def test_a_hinted_attention_mask_is_kept_beside_codebook_ids(catalog):
    import torch

    from hfci import runners

    # kyutai's ids carry a codebook axis, (batch, length, 1 + codebooks); its mask is (batch, length).
    case = build_case(catalog["kyutai_speech_to_text"], "Model")
    assert case.inputs["input_ids"].dim() == 3
    assert case.inputs["attention_mask"].shape == case.inputs["input_ids"].shape[:2]
    # Eager attention materialises the mask; with an ids-shaped mask it indexed past its end.
    assert torch.isfinite(runners.eager(case.model, case.inputs).last_hidden_state).all()


def test_models_toml_entries_are_well_formed():
    from hfci import data

    for model_type, entry in data.load("models").items():
        assert set(entry) <= {"config", "inputs", "skip", "known_failures"}, model_type
        for failure in entry.get("known_failures", []):
            assert failure.get("check") and failure.get("head"), model_type
            assert failure_problem(failure) is None, (model_type, failure_problem(failure))
            reason = failure.get("reason", "")
            assert reason and "unknown" not in reason.lower(), model_type


@pytest.mark.parametrize(
    ("model_type", "head"), [("gpt2", "LMHeadModel"), ("resnet", "ForImageClassification")]
)
def test_every_weight_carries_information(catalog, model_type, head):
    import torch

    model = build_case(catalog[model_type], head).model
    constant = [n for n, p in model.named_parameters() if p.numel() > 1 and bool((p == p.flatten()[0]).all())]
    assert constant == [], "a tensor left at its constant init cannot show a backend that drops it"
    stats = [b for n, b in model.named_buffers() if n.endswith("running_var")]
    assert all(bool((b > 0).all()) and not bool((b == 1).all()) for b in stats)
    # Dropping the biases (what a faulty backend might do) now changes the outputs.
    case = build_case(catalog[model_type], head)
    reference = case.model(**case.inputs).logits
    with torch.no_grad():
        for name, parameter in case.model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    assert not torch.allclose(case.model(**case.inputs).logits, reference, atol=1e-4, rtol=1e-3)


def test_an_import_error_is_a_missing_dependency_only_when_the_package_is_absent():
    absent = ModuleNotFoundError("No module named 'surely_absent_pkg'", name="surely_absent_pkg.sub")
    assert factory.absent_package(absent) == "surely_absent_pkg"
    assert (
        factory.absent_package(ImportError("TimmWrapper requires the timm library but it was not found"))
        == "timm"
    )
    # A package that is installed but broken, or lacks a symbol, is no missing dependency.
    present = ImportError("cannot import name 'nonexistent' from 'torch'", name="torch")
    assert factory.absent_package(present) is None
    assert factory.absent_package(ImportError("requires the torch library")) is None
    missing_class = ImportError("module transformers has no attribute VoxtralRealtimeTextModel")
    missing_class.name = "VoxtralRealtimeTextModel"
    assert factory.absent_package(missing_class) is None


def test_a_validator_naming_two_fields_that_must_match_is_repaired_in_its_sub_config():
    from transformers import PretrainedConfig

    class Codec(PretrainedConfig):
        model_type = "hfci-test-codec"

        def __init__(self, hidden_size=512, codebook_dim=512, **kwargs):
            if codebook_dim != hidden_size:
                raise ValueError(
                    f"so `codebook_dim` ({codebook_dim}) must equal `hidden_size` ({hidden_size})."
                )
            self.hidden_size, self.codebook_dim = hidden_size, codebook_dim
            super().__init__(**kwargs)

    class Parent(PretrainedConfig):
        model_type = "hfci-test-parent"

        def __init__(self, audio_config=None, **kwargs):
            self.audio_config = Codec(**(audio_config or {}))
            super().__init__(**kwargs)

    default = Parent().to_dict()
    config, changes = factory._validated(Parent, {"audio_config": {"hidden_size": 32}}, default)
    assert (config.audio_config.hidden_size, config.audio_config.codebook_dim) == (32, 32)
    assert changes == {"audio_config": {"hidden_size": 32, "codebook_dim": 32}}
    # Anything else a validator refuses is raised as it is.
    with pytest.raises(ValueError, match=r"must equal `hidden_size` \(wide\)"):
        factory._validated(Parent, {"audio_config": {"hidden_size": "wide"}}, default)


def test_a_validator_naming_a_range_past_the_vocabulary_grows_the_vocabulary_it_names():
    from transformers import PretrainedConfig

    class Text(PretrainedConfig):
        model_type = "hfci-test-text"

        def __init__(self, vocab_size=1000, **kwargs):
            self.vocab_size = vocab_size
            super().__init__(**kwargs)

    class Tokenized(PretrainedConfig):
        model_type = "hfci-test-tokenized"

        def __init__(self, text_config=None, audio_token_offset=900, codebook_size=64, **kwargs):
            self.text_config = Text(**(text_config or {}))
            end = audio_token_offset + codebook_size
            if end > self.text_config.vocab_size:
                raise ValueError(
                    f"The audio token range ends at {end}, beyond the vocabulary "
                    f"(`text_config.vocab_size` = {self.text_config.vocab_size})."
                )
            self.audio_token_offset, self.codebook_size = audio_token_offset, codebook_size
            super().__init__(**kwargs)

    default = Tokenized().to_dict()
    config, changes = factory._validated(Tokenized, {"text_config": {"vocab_size": 99}}, default)
    assert config.text_config.vocab_size == 964
    assert changes == {"text_config": {"vocab_size": 964}}
