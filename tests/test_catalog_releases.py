"""The catalog reads the auto tables of every supported transformers release, in each layout.

The layouts are built as small source trees (what ``read_transformers_tables`` reads), so these
run everywhere; where a real release is installed as a plain target dir (``/work/tf/<version>``,
see README "Supported transformers releases"), it is read too, and skipped otherwise.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hfci.catalog import (
    SUPPORTED_TRANSFORMERS,
    CatalogError,
    build_catalog,
    check_supported,
    read_transformers_tables,
    unmatched_entries,
)

# One model type, foo, with a base model and a causal-LM head, a tokenizer and an image processor.
_MODELING = """
    class FooModel(FooPreTrainedModel):
        pass


    class FooForCausalLM(FooPreTrainedModel):
        pass
"""

_MODELING_AUTO = """
    from collections import OrderedDict

    from .auto_factory import _BaseAutoModelClass, _LazyAutoMapping
    from .configuration_auto import CONFIG_MAPPING_NAMES

    MODEL_MAPPING_NAMES = OrderedDict([("foo", "FooModel")])
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES = OrderedDict([("foo", "FooForCausalLM")])
    MODEL_FOR_CAUSAL_LM_MAPPING = _LazyAutoMapping(CONFIG_MAPPING_NAMES, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


    class AutoModelForCausalLM(_BaseAutoModelClass):
        _model_mapping = MODEL_FOR_CAUSAL_LM_MAPPING


    AutoModelForCausalLM = auto_class_update(AutoModelForCausalLM)


    class AutoModelForTextGeneration(AutoModelForCausalLM):
        # A deprecated alias, as 4.57's AutoModelForVision2Seq: no mapping of its own.
        pass
"""

_PIPELINE = """
    class TextGenerationPipeline(Pipeline):
        _load_tokenizer = True
"""

# 4.57 to 5.5: the config and processor tables in their own files, the image processors behind
# `if TYPE_CHECKING: ... else:`, pipelines naming imported classes under `if is_torch_available()`.
LAYOUT_4_57 = {
    "models/auto/configuration_auto.py": """
        from collections import OrderedDict

        CONFIG_MAPPING_NAMES = OrderedDict([("foo", "FooConfig")])
    """,
    "models/auto/tokenization_auto.py": """
        from collections import OrderedDict

        TOKENIZER_MAPPING_NAMES = OrderedDict(
            [("foo", ("FooTokenizer", "FooTokenizerFast" if is_tokenizers_available() else None))]
        )
    """,
    "models/auto/image_processing_auto.py": """
        from collections import OrderedDict
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            IMAGE_PROCESSOR_MAPPING_NAMES: OrderedDict[str, tuple[str, str]] = OrderedDict()
        else:
            IMAGE_PROCESSOR_MAPPING_NAMES = OrderedDict([("foo", ("FooImageProcessor", "FooImageProcessorFast"))])

        for model_type, (slow, fast) in IMAGE_PROCESSOR_MAPPING_NAMES.items():
            IMAGE_PROCESSOR_MAPPING_NAMES[model_type] = (None, None)
    """,
    "models/auto/modeling_auto.py": _MODELING_AUTO,
    "pipelines/__init__.py": """
        from .base import Pipeline
        from .text_generation import TextGenerationPipeline

        if is_torch_available():
            from ..models.auto.modeling_auto import AutoModelForCausalLM, AutoModelForTextGeneration

        SUPPORTED_TASKS = {
            "text-generation": {
                "impl": TextGenerationPipeline,
                "pt": (AutoModelForCausalLM,) if is_torch_available() else (),
                "type": "text",
            },
            "legacy-generation": {
                "impl": TextGenerationPipeline,
                "pt": (AutoModelForTextGeneration,) if is_torch_available() else (),
                "type": "text",
            },
        }
    """,
    "pipelines/text_generation.py": _PIPELINE,
    "models/foo/modeling_foo.py": _MODELING,
}

# 5.10 on: the config and processor tables gathered in auto_mappings.py, pipelines named by
# dotted strings, processor tables completed by `X.update(MISSING_X)` in the runtime branch.
LAYOUT_5_10 = {
    "models/auto/auto_mappings.py": """
        from collections import OrderedDict

        CONFIG_MAPPING_NAMES = OrderedDict([("foo", "FooConfig")])
        IMAGE_PROCESSOR_MAPPING_NAMES = OrderedDict()
    """,
    "models/auto/configuration_auto.py": """
        from .auto_mappings import CONFIG_MAPPING_NAMES
    """,
    "models/auto/tokenization_auto.py": """
        from collections import OrderedDict

        TOKENIZER_MAPPING_NAMES = OrderedDict[str, str | None]([("foo", "FooTokenizer")])
    """,
    "models/auto/image_processing_auto.py": """
        from typing import TYPE_CHECKING

        from .auto_mappings import IMAGE_PROCESSOR_MAPPING_NAMES

        if TYPE_CHECKING:
            pass
        else:
            MISSING_IMAGE_PROCESSOR_MAPPING_NAMES = OrderedDict(
                [("foo", {"torchvision": "FooImageProcessor", "pil": "FooImageProcessorPil"})]
            )
            IMAGE_PROCESSOR_MAPPING_NAMES.update(MISSING_IMAGE_PROCESSOR_MAPPING_NAMES)
    """,
    "models/auto/modeling_auto.py": _MODELING_AUTO,
    "pipelines/__init__.py": """
        from ..models.auto.modeling_auto import AutoModelForCausalLM

        SUPPORTED_TASKS = {
            "text-generation": {
                "impl": "transformers.pipelines.text_generation.TextGenerationPipeline",
                "pt": (AutoModelForCausalLM,),
                "type": "text",
            },
        }
    """,
    "pipelines/text_generation.py": _PIPELINE,
    "models/foo/modeling_foo.py": _MODELING,
}


def _tree(root: Path, layout: dict[str, str], version: str) -> Path:
    package = root / "transformers"
    for rel, text in {**layout, "__init__.py": f'__version__ = "{version}"\n'}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return package


@pytest.mark.parametrize(
    ("layout", "version", "image_processor", "tokenizer"),
    [
        (LAYOUT_4_57, "4.57.6", "FooImageProcessor", "FooTokenizerFast"),
        (LAYOUT_5_10, "5.10.4", "FooImageProcessorPil", "FooTokenizer"),
    ],
)
def test_each_layout_gives_the_same_catalog(
    tmp_path: Path, layout: dict[str, str], version: str, image_processor: str, tokenizer: str
) -> None:
    root = _tree(tmp_path, layout, version)
    ns = read_transformers_tables(root)
    catalog = build_catalog(ns, root, version)
    foo = catalog["foo"]
    assert [(h.name, h.class_name) for h in foo.heads] == [
        ("Model", "FooModel"),
        ("ForCausalLM", "FooForCausalLM"),
    ]
    # The pipeline class was found (by import or by string) and loads a tokenizer, which foo has.
    assert "text-generation" in foo.head("ForCausalLM").tasks
    assert foo.head("ForCausalLM").generative
    # The runtime branch's table (with the processors the backends give), not the annotation's.
    assert foo.processors == {"tokenizer": tokenizer, "image_processor": image_processor}


def test_an_auto_class_without_a_mapping_reads_its_base_s(tmp_path: Path) -> None:
    root = _tree(tmp_path, LAYOUT_4_57, "4.57.6")
    catalog = build_catalog(read_transformers_tables(root), root, "4.57.6")
    assert catalog["foo"].head("ForCausalLM").tasks == ("legacy-generation", "text-generation")


def test_a_tree_without_the_tables_is_one_clear_error(tmp_path: Path) -> None:
    layout = {k: v for k, v in LAYOUT_4_57.items() if k != "models/auto/configuration_auto.py"}
    root = _tree(tmp_path, layout, "4.30.0")
    with pytest.raises(CatalogError) as error:
        read_transformers_tables(root)
    assert str(error.value) == (
        f"could not read the auto mappings of transformers 4.30.0 at {root}; "
        f"hfci supports transformers {SUPPORTED_TRANSFORMERS}"
    )


@pytest.mark.parametrize("version", ["4.57.0", "5.0.0", "5.24.0", "5.99.1", "5.25.0.dev0"])
def test_supported_releases(version: str) -> None:
    check_supported(version)


@pytest.mark.parametrize("version", ["4.56.2", "6.0.0", "6.0.0.dev0"])
def test_an_unsupported_release_names_itself_and_the_range(version: str) -> None:
    with pytest.raises(
        CatalogError, match=rf"^transformers {version} is installed; hfci supports transformers >=4\.57,<6$"
    ):
        check_supported(version)


def test_pyproject_pins_the_supported_range() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"transformers{SUPPORTED_TRANSFORMERS}"' in pyproject


def test_entries_that_do_not_apply_are_named() -> None:
    from hfci import data

    scoped = next(
        (m, f)
        for m, e in sorted(data.load("models").items())
        for f in e.get("known_failures", [])
        if f.get("transformers") and isinstance(f.get("check"), str) and isinstance(f.get("head"), str)
    )
    model_type, failure = scoped
    everything = sorted(data.load("models"))
    # Every model type present, on a release outside the entry's range: that entry is named.
    found = unmatched_entries(everything, "1.0.0")
    expected = f"known failure ({failure['check']} of {failure['head']}) is for transformers {failure['transformers']}"
    assert (model_type, expected) in found
    assert all(m in everything for m, _ in found)
    # Its model type gone: the entry is named once, for that.
    found = unmatched_entries([m for m in everything if m != model_type], "1.0.0")
    assert [why for m, why in found if m == model_type] == ["not a model type of transformers 1.0.0"]


# Real releases, where installed (not in CI, which has the pinned one only).
RELEASES = ["4.57.6", "5.0.0", "5.5.4", "5.10.4", "5.20.2", "5.22.2"]


@pytest.mark.parametrize("version", RELEASES)
def test_an_installed_release_reads_as_it_imports(version: str) -> None:
    root = Path("/work/tf") / version / "transformers"
    if not root.is_dir():
        pytest.skip(f"transformers {version} is not installed at {root}")
    ns = read_transformers_tables(root)
    catalog = build_catalog(ns, root, version)
    # Deprecated models' classes are found under models/deprecated (4.57 had 60 heads there); an
    # upstream slip or two (4.57 maps perception_encoder to a class no module defines) is reported.
    assert len(catalog.dangling_heads) < 3, catalog.dangling_heads
    assert len(catalog) > 400
    bert = catalog["bert"]
    assert "fill-mask" in bert.head("ForMaskedLM").tasks
    assert bert.processors["tokenizer"]
    assert "image-classification" in catalog["vit"].head("ForImageClassification").tasks
    assert "automatic-speech-recognition" in catalog["wav2vec2"].head("ForCTC").tasks
    assert catalog["vit"].processors["image_processor"].startswith("ViTImageProcessor")
