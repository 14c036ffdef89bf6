"""Tiny builds across families the factory treats generically: each must build and run forward."""

from __future__ import annotations

import pytest

from hfci import checks
from hfci.case import build_case, parameter_count
from hfci.catalog import load_catalog


@pytest.mark.parametrize(
    ("model_type", "head", "main_input"),
    [
        ("whisper", "ForConditionalGeneration", "input_features"),
        ("wav2vec2", "ForXVector", "input_values"),
        ("videomae", "ForVideoClassification", "pixel_values"),
        ("detr", "ForObjectDetection", "pixel_values"),
        ("swin", "ForImageClassification", "pixel_values"),
        ("llava_next", "ForConditionalGeneration", "input_ids"),
        ("patchtst", "ForClassification", "past_values"),
        ("qwen2_moe", "ForCausalLM", "input_ids"),
        # Patch rows padded per sample, which the model unpads by each image's grid.
        ("colqwen2", "ForRetrieval", "pixel_values"),
    ],
)
def test_family_builds_and_runs(model_type, head, main_input):
    case = build_case(load_catalog()[model_type], head)
    assert main_input in case.inputs
    assert parameter_count(case.model) < 5_000_000
    checks.check_forward(case)


def test_a_waveform_s_layout_follows_what_the_model_type_s_own_feature_extractor_emits():
    from hfci.inputs import _extracted_rank

    # Codecs read (batch, channels, samples); wav2vec2-style encoders (batch, samples).
    assert _extracted_rank("EncodecFeatureExtractor") == 3
    assert _extracted_rank("Wav2Vec2FeatureExtractor") == 2
    # One that emits no input_values, or that transformers does not have, says nothing.
    assert _extracted_rank("WhisperFeatureExtractor") is None
    assert _extracted_rank("NoSuchFeatureExtractor") is None
    assert _extracted_rank(None) is None


def test_patch_rows_come_padded_per_sample_only_to_a_model_that_unpads_them():
    colqwen2 = build_case(load_catalog()["colqwen2"], "ForRetrieval")
    qwen2_vl = build_case(load_catalog()["qwen2_vl"], "ForConditionalGeneration")
    assert colqwen2.inputs["pixel_values"].dim() == 3
    assert colqwen2.inputs["pixel_values"].shape[0] == colqwen2.inputs["image_grid_thw"].shape[0]
    assert qwen2_vl.inputs["pixel_values"].dim() == 2
