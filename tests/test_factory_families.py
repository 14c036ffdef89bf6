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
    ],
)
def test_family_builds_and_runs(model_type, head, main_input):
    case = build_case(load_catalog()[model_type], head)
    assert main_input in case.inputs
    assert parameter_count(case.model) < 5_000_000
    checks.check_forward(case)
