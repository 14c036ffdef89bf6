"""Test impact: model types' transformers sources hashed from real files, and ``--changed-since``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hfci import baselines
from hfci.catalog import Catalog, Head, ModelRecord, load_catalog
from hfci.impact import ImpactError, SourceTree, changed_since, read_recorded
from hfci.results import Record, write_results

# A transformers package in miniature: what each file imports is what the real ones do.
TREE = {
    "__init__.py": "from .models import *\n",
    "modeling_utils.py": "from .integrations.sdpa import sdpa\nclass PreTrainedModel: ...\n",
    "masking_utils.py": "def mask(): ...\n",
    "activations.py": "def gelu(): ...\n",
    "integrations/__init__.py": "",
    "integrations/sdpa.py": "def sdpa(): ...\n",
    "generation/__init__.py": (
        "from typing import TYPE_CHECKING\n"
        "_import_structure = {'utils': ['GenerationMixin']}\n"
        "if TYPE_CHECKING:\n    from .utils import GenerationMixin\n"
    ),
    "generation/utils.py": "class GenerationMixin: ...\n",
    "trainer.py": "from .modeling_utils import PreTrainedModel\n",
    "models/__init__.py": "from . import alpha, beta, gamma\n",
    "models/auto/modeling_auto.py": "MODEL_MAPPING_NAMES = {'alpha': 'AlphaModel'}\n",
    "models/alpha/__init__.py": "",
    "models/alpha/configuration_alpha.py": "class AlphaConfig: ...\n",
    "models/alpha/modeling_alpha.py": (
        "from ...modeling_utils import PreTrainedModel\n"
        "from ...masking_utils import mask\n"
        "from ...generation import GenerationMixin\n"
        "from .configuration_alpha import AlphaConfig\n"
        "class AlphaLayer: ...\n"
    ),
    "models/alpha/modular_alpha.py": "class AlphaLayer: ...\n",
    "models/alpha/convert_alpha_to_hf.py": "import torch\n",
    "models/beta/__init__.py": "",
    "models/beta/modeling_beta.py": (
        "from ...modeling_utils import PreTrainedModel\n"
        "from ..alpha.modeling_alpha import (\n    AlphaLayer,\n)\n"
    ),
    "models/gamma/__init__.py": "",
    "models/gamma/modeling_gamma.py": (
        "import transformers.modeling_utils\ndef forward():\n    from transformers.activations import gelu\n"
    ),
}


def record(model_type: str) -> ModelRecord:
    stem = model_type.capitalize()
    head = Head("Model", f"{stem}Model", ("MODEL",), ())
    return ModelRecord(
        model_type, model_type, stem, model_type, f"{stem}Config", "text", "x", "other", True, (head,)
    )


CATALOG = Catalog("0", {t: record(t) for t in ("alpha", "beta", "gamma")})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "transformers"
    for rel, text in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def hashes(root: Path) -> dict[str, str]:
    return SourceTree(root).record(CATALOG)["types"]


def moved_by(root: Path, rel: str) -> set[str]:
    """The model types whose hash moves when ``rel`` is edited."""
    before = hashes(root)
    path = root / rel
    path.write_text(path.read_text() + "# edited\n")
    after = hashes(root)
    return {t for t in before if before[t] != after[t]}


def test_a_model_file_moves_its_type_and_the_types_importing_it(tree: Path) -> None:
    assert moved_by(tree, "models/gamma/modeling_gamma.py") == {"gamma"}
    assert moved_by(tree, "models/alpha/configuration_alpha.py") == {"alpha", "beta"}


def test_a_shared_file_moves_every_type_that_imports_it(tree: Path) -> None:
    assert moved_by(tree, "modeling_utils.py") == {"alpha", "beta", "gamma"}
    # beta runs alpha's modeling file, which imports it.
    assert moved_by(tree, "masking_utils.py") == {"alpha", "beta"}
    # gamma imports it inside a function, absolutely: it runs when the function does.
    assert moved_by(tree, "activations.py") == {"gamma"}
    # Through the package's lazy table, to the file that defines the name.
    assert moved_by(tree, "generation/utils.py") == {"alpha", "beta"}


@pytest.mark.parametrize(
    "rel",
    [
        "trainer.py",
        "models/alpha/modular_alpha.py",
        "models/alpha/convert_alpha_to_hf.py",
        "models/auto/modeling_auto.py",
        "models/__init__.py",
        "__init__.py",
        "generation/__init__.py",
        # Reached only through modeling_utils' own imports: not hashed into any type.
        "integrations/sdpa.py",
    ],
)
def test_files_no_model_runs_directly_move_no_type(tree: Path, rel: str) -> None:
    assert moved_by(tree, rel) == set()


def test_a_types_auto_mapping_entries_are_in_its_hash(tree: Path) -> None:
    before = SourceTree(tree).type_hash(CATALOG["alpha"])[0]
    extra = Head("ForCausalLM", "AlphaForCausalLM", ("MODEL_FOR_CAUSAL_LM",), ())
    grown = dataclasses.replace(CATALOG["alpha"], heads=(*CATALOG["alpha"].heads, extra))
    assert SourceTree(tree).type_hash(grown)[0] != before


def write_run(directory: Path, root: Path, types: list[str]) -> Path:
    """A results file of a run of ``types``, recording their sources as a run does."""
    records = [Record(f"{t}/Model", t, "Model", "cpu", "forward", "passed", 0.1) for t in types]
    sources = SourceTree(root).record(CATALOG[t] for t in types)
    return write_results(directory, "cpu", records, {"sources": sources})


def test_changed_since_selects_the_moved_and_the_new_types_and_says_why(tree: Path, tmp_path: Path) -> None:
    results = write_run(tmp_path / "old", tree, ["alpha", "beta", "gamma"])
    unchanged = changed_since(results, CATALOG, SourceTree(tree))
    assert unchanged.selected == frozenset() and unchanged.total == 3
    (tree / "models/alpha/modeling_alpha.py").write_text(TREE["models/alpha/modeling_alpha.py"] + "x = 1\n")
    (tree / "integrations/sdpa.py").write_text("def sdpa(): return 1\n")
    impact = changed_since(results, CATALOG, SourceTree(tree))
    assert impact.moved == ("alpha", "beta") and impact.new == ()
    assert impact.files == (("models/alpha/modeling_alpha.py", 2),)
    assert impact.uncovered == ("integrations/sdpa.py",)
    line = impact.describe()
    assert "2 of 3 model types with a model (2 whose transformers sources moved, 0 new)" in line
    assert "models/alpha/modeling_alpha.py (2)" in line and "integrations/sdpa.py" in line
    # A type the recorded run did not have is new.
    partial = write_run(tmp_path / "partial", tree, ["alpha", "beta"])
    assert changed_since(partial, CATALOG, SourceTree(tree)).new == ("gamma",)


def test_shard_directories_and_baselines_are_read_too(tree: Path, tmp_path: Path) -> None:
    write_run(tmp_path / "shards" / "shard-1", tree, ["alpha"])
    write_run(tmp_path / "shards" / "shard-2", tree, ["beta", "gamma"])
    assert set(read_recorded(tmp_path / "shards").types) == {"alpha", "beta", "gamma"}
    run = [Record("alpha/Model", "alpha", "Model", "cpu", "forward", "passed", 0.1)]
    sources = SourceTree(tree).record([CATALOG["alpha"]])
    merged = baselines.merge(None, run, {"device": "cpu"}, "cpu-x", sources)
    path = baselines.write(tmp_path / "cpu-x.json", merged)
    assert baselines.load(path).sources == sources
    # A later run of other types adds to what the baseline recorded; older files still load.
    later = baselines.merge(baselines.load(path), [], {"device": "cpu"}, "cpu-x", hashes_of(tree, "gamma"))
    assert set(later.sources["types"]) == {"alpha", "gamma"}
    assert changed_since(path, CATALOG, SourceTree(tree)).new == ("beta", "gamma")


def hashes_of(root: Path, model_type: str) -> dict[str, dict[str, str]]:
    return SourceTree(root).record([CATALOG[model_type]])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such results file or directory"),
        ("{not json", "not a readable JSON file"),
        (
            json.dumps({"schema": "hfci-results/1", "device": "cpu", "records": []}),
            "records no transformers sources",
        ),
        (
            json.dumps({"schema": "hfci-results/1", "records": [], "sources": [1]}),
            "not a table of model types",
        ),
        (
            json.dumps({"schema": "hfci-baseline/1", "fingerprint": "x", "cases": {}}),
            "records no transformers",
        ),
    ],
)
def test_a_file_without_sources_is_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "results-cpu.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ImpactError, match=message) as error:
        changed_since(path, CATALOG, SourceTree(tmp_path))
    assert str(path) in str(error.value) and "--changed-since" in str(error.value)


def test_the_real_catalog_hashes_in_seconds() -> None:
    catalog = load_catalog()
    tree = SourceTree()
    recorded = tree.record(catalog)
    assert set(recorded["types"]) == set(catalog.records)
    covered = tree.type_hash(catalog["bert"])[1]
    assert {"models/bert/modeling_bert.py", "modeling_utils.py", "generation/utils.py"} <= covered
    assert not any(f.startswith("models/llama/") for f in covered)


def hfci(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hfci.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_a_run_records_its_sources_and_changed_since_selects_from_them(tmp_path: Path) -> None:
    # One real check of one case, in one process: the results it writes record bert's sources.
    suite = [sys.executable, "-m", "pytest", "--pyargs", "hfci.pytest.suite", "-p", "no:cacheprovider"]
    one = ["--model", "bert", "--one-head", "--device", "cpu", "--no-benchmark", "-k", "test_forward"]
    ran = subprocess.run(
        [*suite, "--run-model-tests", *one, "--results-dir", str(tmp_path / "run"), "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    results = tmp_path / "run" / "results-cpu.json"
    recorded = json.loads(results.read_text())["sources"]
    assert list(recorded["types"]) == ["bert"] and "models/bert/modeling_bert.py" in recorded["files"]

    # Against that run, bert moved nowhere: nothing to run, and a success.
    same = hfci("run", "--model", "bert", "--changed-since", str(results), cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "nothing to run" in same.stdout and "+ " not in same.stdout

    # Every other type is new to it; with bert's hash moved, bert is selected again.
    catalog = load_catalog()
    listed = hfci("catalog", "--changed-since", str(results), cwd=tmp_path)
    runnable = sum(1 for r in catalog if r.has_model)
    assert f"{runnable - 1} of {runnable} model types with a model (0 whose" in listed.stdout
    payload = json.loads(results.read_text())
    payload["sources"]["types"]["bert"] = "0" * 16
    payload["sources"]["files"]["models/bert/modeling_bert.py"] = "0" * 16
    results.write_text(json.dumps(payload))
    listed = hfci(
        "catalog", "--model", "bert", "--model", "albert", "--changed-since", str(results), cwd=tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    assert "\nbert " in listed.stdout and "\nalbert " in listed.stdout
    assert "files moved: models/bert/modeling_bert.py (1)" in listed.stdout
    collected = subprocess.run(
        [
            *suite,
            "--collect-only",
            "-q",
            "--model",
            "bert",
            "--model",
            "albert",
            "--changed-since",
            str(results),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert "test_forward[bert/Model-cpu]" in collected.stdout
    assert "test_forward[albert/Model-cpu]" in collected.stdout


def test_a_bad_changed_since_is_one_error_and_nothing_runs(tmp_path: Path) -> None:
    old = tmp_path / "results-cpu.json"
    old.write_text(json.dumps({"schema": "hfci-results/1", "device": "cpu", "records": []}))
    for path in (old, tmp_path / "missing.json"):
        done = hfci("run", "--changed-since", str(path), cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.startswith("hfci: error: --changed-since") and str(path) in done.stderr
        assert not (tmp_path / "results").exists()
