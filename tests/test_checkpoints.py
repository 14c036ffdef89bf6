"""A user's own ``save_pretrained`` directory runs through the same checks as a tiny case.

The checkpoints here are real: a two-layer GPT-2 saved with a byte-level BPE tokenizer trained in
the test on a small corpus, so its pipeline check has a tokenizer nothing in hfci built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hfci.catalog import load_catalog
from hfci.checkpoints import CheckpointError, content_hash, resolve
from hfci.checks import PROBE_TEXT
from hfci.project import ProjectError, checkpoint_entries
from hfci.pytest.cases import selected_cases
from hfci.selection import Selection

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, a checkpoint reads its own text",
    "small models are saved with their tokenizer and read back offline",
] * 10


def train_tokenizer():
    """A byte-level BPE trained on ``CORPUS``, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS, trainer)
    special = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=special, eos_token=special)


def save_checkpoint(directory: Path, model_vocab: int | None = None, seed: int = 0) -> Path:
    """A GPT-2 (2 layers, width 32) and its trained tokenizer, saved as a user would.

    ``model_vocab`` smaller than the tokenizer plants a bug: ids the model cannot embed.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer()
    config = GPT2Config(
        vocab_size=model_vocab or len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "good": save_checkpoint(root / "tinygpt"),
        "bad": save_checkpoint(root / "badvocab", model_vocab=200),
    }


@pytest.fixture
def project(tmp_path: Path, saved: dict[str, Path]) -> Path:
    """A throwaway project whose pyproject names its checkpoint by a path relative to itself."""
    shutil.copytree(saved["good"], tmp_path / "models" / "tinygpt")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "mine"\n\n[tool.hfci.checkpoints]\ntinygpt = "models/tinygpt"\n'
    )
    return tmp_path


def run_in(project: Path, *args: str, hfci: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hfci.cli", "run"] if hfci else [sys.executable, "-m", "pytest"]
    command += ["-p", "no:cacheprovider"] if not hfci else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command + list(args), cwd=project, capture_output=True, text=True, env=env)


def records(project: Path) -> list[dict]:
    return json.loads((project / "results" / "results-cpu.json").read_text())["records"]


def test_a_project_s_checkpoint_runs_every_check_with_its_own_tokenizer(project: Path) -> None:
    directory = project / "models" / "tinygpt"
    case = f"ckpt:tinygpt:{content_hash(directory)[:12]}/LMHeadModel"
    args = ["--run-model-tests", "-v", "--runner", "eager", "--runner", "sdpa", "--update-baselines"]
    done = run_in(project, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"test_forward[{case}-cpu] PASSED" in done.stdout
    found = records(project)
    # Only the checkpoint: naming checkpoints runs them, not the catalog's tiny cases.
    assert {r["case"] for r in found} == {case}
    outcomes = {(r["check"], r["runner"]): r["outcome"] for r in found}
    assert outcomes == {
        (check, "eager"): "passed"
        for check in (
            "forward",
            "determinism",
            "save_load",
            "padding",
            "generate",
            "cache",
            "training",
            "pipeline",
            "benchmark",
        )
    } | {("parity", "sdpa"): "passed"}
    assert {(r["model_type"], r["head"], r["category"], r["tier"]) for r in found} == {
        ("gpt2", "LMHeadModel", "text", "critical")
    }
    # The pipeline ran on the tokenizer this test trained: its size and its ids of the probe.
    pipeline = next(r for r in found if r["check"] == "pipeline")["metrics"]["pipeline"]
    tokenizer = train_tokenizer()
    assert pipeline["task"] == "text-generation"
    assert pipeline["processors"] == {"tokenizer": "checkpoint"}
    assert pipeline["tokenizer"]["size"] == len(tokenizer) == 300
    assert pipeline["tokenizer"]["ids"] == tokenizer(PROBE_TEXT)["input_ids"]
    assert pipeline["inputs"] == "the checkpoint's tokenizer"
    [baseline] = (project / "baselines").glob("*.json")
    assert set(json.loads(baseline.read_text())["cases"]) == {case, f"{case}@sdpa"}

    # Other weights saved under the same name are another entry, not a regression of the first.
    save_checkpoint(directory, seed=1)
    again = f"ckpt:tinygpt:{content_hash.__wrapped__(directory)[:12]}/LMHeadModel"
    assert again != case
    done = run_in(project, "--run-model-tests", "-k", "forward or benchmark", "--update-baselines")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert {r["case"] for r in records(project)} == {again}
    assert set(json.loads(baseline.read_text())["cases"]) == {case, f"{case}@sdpa", again}


def test_hfci_run_checkpoint_fails_the_pipeline_on_a_tokenizer_its_model_cannot_embed(
    project: Path, saved: dict[str, Path]
) -> None:
    # The planted bug: a tokenizer of 300 tokens beside a model embedding 200.
    args = ["--checkpoint", str(saved["bad"]), "--workers", "1", "--no-baseline-check", "-k", "badvocab"]
    done = run_in(project, *args, hfci=True)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    found = {r["check"]: r for r in records(project)}
    assert {r["case"] for r in found.values()} == {
        f"ckpt:badvocab:{content_hash(saved['bad'])[:12]}/LMHeadModel"
    }
    assert found["pipeline"]["outcome"] == "failed"
    assert "gives id 299" in found["pipeline"]["reason"]
    assert "past the model's vocabulary of 200" in found["pipeline"]["reason"]
    # The model itself is sound: the other checks ran on synthetic ids inside its vocabulary.
    assert {c: r["outcome"] for c, r in found.items() if c != "pipeline"} == dict.fromkeys(
        ("forward", "determinism", "save_load", "padding", "generate", "cache", "training", "benchmark"),
        "passed",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "missing/dir/x",
            "checkpoint 'missing/dir/x': no such directory; the project's checkpoints: tinygpt",
        ),
        (
            "some-org/some-model",
            "'some-org/some-model' is not a local directory; a Hub id needs the network, and "
            "HF_HUB_OFFLINE is set; download it with `huggingface-cli download some-org/some-model",
        ),
    ],
    ids=["missing-directory", "hub-id-offline"],
)
def test_a_bad_checkpoint_is_one_clear_error(project: Path, value: str, message: str) -> None:
    done = run_in(project, "--run-model-tests", "--checkpoint", value, "--collect-only")
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_a_project_s_missing_checkpoint_is_named_when_model_tests_run(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    pass\n")
    (tmp_path / "pyproject.toml").write_text('[tool.hfci.checkpoints]\ngone = "models/gone"\n')
    # Without the flag the project's pytest stays its own: its checkpoints are not even read.
    assert run_in(tmp_path, "-q").returncode == 0
    done = run_in(tmp_path, "--run-model-tests", "--collect-only")
    assert done.returncode != 0
    expected = (
        f"checkpoint 'gone' of [tool.hfci.checkpoints]: no such directory {tmp_path.resolve()}/models/gone"
    )
    assert expected in done.stderr, done.stderr[-2000:]


def test_checkpoints_replace_the_tiny_cases_unless_a_model_filter_is_given(
    project: Path, saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    catalog = load_catalog()

    def cases(**values) -> list[str]:
        return sorted(s.case for s in selected_cases(Selection(**values), ["cpu"], catalog))

    mine = f"ckpt:tinygpt:{content_hash((project / 'models' / 'tinygpt').resolve())[:12]}/LMHeadModel"
    bad = f"ckpt:badvocab:{content_hash(saved['bad'].resolve())[:12]}/LMHeadModel"
    assert cases() == [mine]  # the project's table
    assert cases(checkpoint=(str(saved["bad"]),)) == [bad]  # the command line replaces the table
    assert cases(checkpoint=("tinygpt", "models/tinygpt")) == [mine]  # by name or by path: one case
    tiny_gpt2 = [f"gpt2/{h.name}" for h in catalog["gpt2"].heads]
    assert cases(model=("gpt2",)) == sorted([*tiny_gpt2, mine])
    assert cases(model=("bert",)) == sorted(f"bert/{h.name}" for h in catalog["bert"].heads)


def test_a_checkpoint_is_keyed_by_its_content(tmp_path: Path, saved: dict[str, Path]) -> None:
    copy = shutil.copytree(saved["good"], tmp_path / "copy")
    assert content_hash.__wrapped__(copy) == content_hash(saved["good"])
    # One byte of one weight changed (the file's last byte is tensor data): another checkpoint.
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(weights))
    assert content_hash.__wrapped__(copy) != content_hash(saved["good"])
    found = resolve(str(copy), load_catalog(), {})
    assert (found.name, found.model_type, found.head, found.class_name) == (
        "copy",
        "gpt2",
        "LMHeadModel",
        "GPT2LMHeadModel",
    )
    # A config without architectures stands for its model type's base head.
    config = json.loads((copy / "config.json").read_text())
    del config["architectures"]
    (copy / "config.json").write_text(json.dumps(config))
    assert resolve(str(copy), load_catalog(), {}).class_name == "GPT2Model"


def test_what_cannot_be_a_checkpoint_is_named(tmp_path: Path, saved: dict[str, Path]) -> None:
    catalog = load_catalog()
    with pytest.raises(
        CheckpointError, match=r"has no config\.json \(expected a save_pretrained directory\)"
    ):
        resolve(str(tmp_path), catalog, {})
    odd = shutil.copytree(saved["good"], tmp_path / "odd")
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    with pytest.raises(CheckpointError, match=r"'BertModel', which is no head of gpt2; valid: GPT2"):
        resolve(str(odd), catalog, {})
    (odd / "config.json").write_text(json.dumps({**config, "model_type": "no-such-type"}))
    with pytest.raises(CheckpointError, match=r"model_type 'no-such-type' is not a model type"):
        resolve(str(odd), catalog, {})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'mine = { path = "m", url = "x" }',
            r"\[tool.hfci.checkpoints\].mine: unknown key 'url'; valid: path, hub",
        ),
        ('"a/b" = "m"', r"bad name 'a/b'; use letters, digits"),
        ("mine = 3", r"mine must be a path or a table with keys path, hub"),
        ('mine = { hub = "" }', r"mine needs a non-empty path or hub"),
    ],
)
def test_a_bad_checkpoints_table_is_one_clear_error(tmp_path: Path, table: str, message: str) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.hfci.checkpoints]\n{table}\n")
    with pytest.raises(ProjectError, match=message):
        checkpoint_entries(pyproject)


def test_entries_are_paths_from_the_pyproject_s_directory(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.hfci.checkpoints]\na = "models/a"\nb = { path = "/abs/b", hub = "org/b" }\n')
    assert checkpoint_entries(pyproject) == {
        "a": {"path": tmp_path.resolve() / "models" / "a", "hub": None},
        "b": {"path": Path("/abs/b"), "hub": "org/b"},
    }


RUNNER = '''
def run(model, inputs):
    """The README's backend: it runs any model but bert."""
    if model.config.model_type == "bert":
        raise NotImplementedError("no bert kernels")
    return model(**inputs)
'''


def readme_example() -> str:
    """The pyproject.toml of the README's worked example, exactly as printed there."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("A worked example") :]
    return section[section.index("```toml\n") + len("```toml\n") : section.index("```\n", 10)]


def test_the_readme_s_worked_example_runs_as_written(tmp_path: Path, saved: dict[str, Path]) -> None:
    """Its runner, checkpoint, known failure, default selection and baselines folder, for real."""
    (tmp_path / "pyproject.toml").write_text(readme_example())
    (tmp_path / "my_backend").mkdir()
    (tmp_path / "my_backend" / "__init__.py").write_text("")
    (tmp_path / "my_backend" / "hfci.py").write_text(RUNNER)
    shutil.copytree(saved["good"], tmp_path / "models" / "support-bot")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--run-model-tests"]
    done = subprocess.run(
        [*command, "--update-baselines", "-k", "support-bot or bert"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    verdicts = {(r["case"], r["check"], r["runner"]): (r["outcome"], r["reason"]) for r in records(tmp_path)}
    (checkpoint,) = {case for case, _, _ in verdicts if case.startswith("ckpt:support-bot:")}
    # A runner in the selection runs the parity check of every case against eager.
    assert {check for case, check, _ in verdicts} == {"parity"}
    assert verdicts[checkpoint, "parity", "mine"][0] == "passed"
    # The critical tier's bert (the default selection) with the README's known failure of `mine`.
    outcome, reason = verdicts["bert/ForMaskedLM", "parity", "mine"]
    assert outcome == "xfailed" and reason.startswith("our engine has no bert kernels yet")
    raised = {r["raised"] for r in records(tmp_path) if r["case"] == "bert/ForMaskedLM"}
    assert raised == {"NotImplementedError: no bert kernels"}
    assert len(list((tmp_path / "perf" / "baselines").glob("*.json"))) == 1  # [tool.hfci] baselines
