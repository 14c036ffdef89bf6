"""The catalog against transformers' own mappings, read the ordinary way (importing them)."""

from __future__ import annotations

import keyword
import subprocess
import sys

import pytest

from hfci.catalog import CATEGORIES, CatalogError, categorize, identifier_for, load_catalog


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_one_record_per_config_mapping_entry(catalog):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    assert set(catalog.records) == set(CONFIG_MAPPING_NAMES)
    for model_type, config_class in CONFIG_MAPPING_NAMES.items():
        assert catalog[model_type].config_class == config_class


def test_heads_equal_the_modeling_auto_mappings(catalog):
    from transformers.models.auto import modeling_auto

    expected: dict[str, set[str]] = {}
    for name in dir(modeling_auto):
        table = getattr(modeling_auto, name)
        if name.startswith("MODEL") and name.endswith("_NAMES") and isinstance(table, dict):
            for model_type, classes in table.items():
                if model_type in catalog.records:
                    classes = (classes,) if isinstance(classes, str) else classes
                    expected.setdefault(model_type, set()).update(classes)
    got = {r.model_type: {h.class_name for h in r.heads} for r in catalog if r.heads}
    assert got == expected


def test_every_head_class_exists_in_transformers(catalog):
    from hfci.catalog import resolve_class

    assert catalog.dangling_heads == ()
    for record in catalog:
        for head in record.heads:
            assert resolve_class(record, head.class_name).__name__ == head.class_name


def test_pipeline_tasks_come_from_supported_tasks(catalog):
    from transformers.pipelines import SUPPORTED_TASKS

    tasks = {t for r in catalog for t in r.tasks}
    assert tasks and tasks <= set(SUPPORTED_TASKS)
    assert "fill-mask" in catalog["bert"].head("ForMaskedLM").tasks
    assert "automatic-speech-recognition" in catalog["wav2vec2"].head("ForCTC").tasks


def test_reading_the_catalog_does_not_import_torch():
    code = "import sys; from hfci.catalog import load_catalog; load_catalog(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("model_type", "identifier", "stem"),
    [
        ("xlm-roberta", "xlm_roberta", "XLMRoberta"),
        ("gptj", "gptj", "GPTJ"),
        ("gpt_neox", "gpt_neox", "GPTNeoX"),
        ("gpt2", "gpt2", "GPT2"),
        ("data2vec-audio", "data2vec_audio", "Data2VecAudio"),
        ("wav2vec2-conformer", "wav2vec2_conformer", "Wav2Vec2Conformer"),
    ],
)
def test_names(catalog, model_type, identifier, stem):
    record = catalog[model_type]
    assert (record.identifier, record.stem) == (identifier, stem)
    assert catalog.by_identifier(identifier).model_type == model_type
    assert catalog.resolve(identifier) == model_type


def test_every_identifier_is_valid_and_unique(catalog):
    identifiers = [r.identifier for r in catalog]
    assert all(i.isidentifier() and not keyword.iskeyword(i) for i in identifiers)
    assert len(set(identifiers)) == len(identifiers)
    hyphenated = [r for r in catalog if "-" in r.model_type]
    assert hyphenated, "transformers has hyphenated model types"
    assert all(catalog.by_identifier(r.identifier) is r for r in hyphenated)
    assert identifier_for("a.b-c") == "a_b_c"


@pytest.mark.parametrize(
    ("model_type", "category", "family"),
    [
        ("bert", "text", "encoder-only"),
        ("xlm-roberta", "text", "encoder-only"),
        ("opt", "text", "decoder-only"),
        ("llama", "text", "decoder-only"),
        ("t5", "text", "encoder-decoder"),
        ("bart", "text", "encoder-decoder"),
        ("vit", "vision", "vision-encoder"),
        ("detr", "vision", "vision-dense-prediction"),
        ("hubert", "audio", "speech-encoder"),
        ("wav2vec2", "audio", "speech-encoder"),
        ("whisper", "audio", "speech-seq2seq"),
        ("speecht5", "audio", "text-to-speech"),
        ("clip", "multimodal", "multimodal-encoder"),
        ("clap", "multimodal", "multimodal-encoder"),
        ("llava_next", "multimodal", "vision-language-generative"),
        ("autoformer", "time-series", "time-series"),
    ],
)
def test_categories_and_families(catalog, model_type, category, family):
    record = catalog[model_type]
    assert (record.category, record.family) == (category, family)


def test_every_record_has_a_known_category(catalog):
    assert {r.category for r in catalog} <= set(CATEGORIES)


def test_categorize_rules():
    assert categorize(["audio", "text"], {}) == "audio"
    assert categorize(["vision", "text"], {}) == "multimodal"
    assert categorize([], {"image_processor": "X"}) == "vision"
    assert categorize(["text"], {"feature_extractor": "F"}, base_only=True) == "text"
    assert categorize(["text", "audio"], {}, base_only=True) == "multimodal"
    assert categorize([], {}) == "other"


def test_sub_configs_are_kept_and_marked(catalog):
    sub = [r for r in catalog if not r.has_model]
    assert sub, "transformers has config-only sub-model types"
    assert all(r.family == "sub-config" and not r.heads for r in sub)
    assert catalog["blip_2_vision_model"].category == "vision"


def test_tiers_from_the_seed_lists(catalog):
    assert catalog["bert"].tier == "critical"
    assert catalog["xlm-roberta"].tier == "critical"
    assert catalog["gptj"].tier == "critical"
    assert catalog["qwen2"].tier == "high"
    assert catalog["blip-2"].tier == "high"
    assert catalog["llama"].tier == "critical"  # CodeLlama (high) does not lower Llama
    assert catalog["cohere"].tier == "medium"
    assert ("medium", "Mistral-Next", "mistral-next") in catalog.unmatched_tiers


def test_processors(catalog):
    assert catalog["bert"].processors["tokenizer"] == "BertTokenizer"
    assert "image_processor" in catalog["vit"].processors
    assert catalog["hubert"].processors["feature_extractor"] == "Wav2Vec2FeatureExtractor"


def test_select_validates_each_filter(catalog):
    assert {r.category for r in catalog.select(categories=["vision"])} == {"vision"}
    with pytest.raises(CatalogError, match="unknown category 'visoin'; valid: text, vision"):
        catalog.select(categories=["visoin"])
    with pytest.raises(CatalogError, match="unknown tier 'urgent'"):
        catalog.select(tiers=["urgent"])
    with pytest.raises(CatalogError, match="unknown family"):
        catalog.select(families=["encoder-ony"])
    with pytest.raises(CatalogError, match="unknown model 'xlm-robert'"):
        catalog.select(models=["xlm-robert"])
    assert [r.model_type for r in catalog.select(models=["xlm_roberta"])] == ["xlm-roberta"]
