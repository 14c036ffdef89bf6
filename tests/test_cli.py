"""``hfci`` as people call it: a real subprocess each time."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def hfci(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hfci.cli", *args], capture_output=True, text=True)


def test_catalog_json_lists_every_model_type():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    out = hfci("catalog", "--format", "json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    models = payload["models"]
    assert {m["model_type"] for m in models} == set(CONFIG_MAPPING_NAMES)
    assert all(m["category"] for m in models)
    fields = {
        "model_type",
        "identifier",
        "stem",
        "config_class",
        "category",
        "family",
        "tier",
        "heads",
        "processors",
        "tasks",
    }
    assert fields <= set(models[0])
    assert all(m["identifier"].isidentifier() for m in models if "-" in m["model_type"])


def test_catalog_table_and_filters():
    out = hfci("catalog", "--category", "vision", "--format", "table")
    assert out.returncode == 0
    assert "vit " in out.stdout and "bert " not in out.stdout
    critical = hfci("catalog", "--tier", "critical", "--format", "md")
    assert critical.returncode == 0
    assert "| xlm-roberta | text | encoder-only | critical |" in critical.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--category", "visoin"),
            "unknown category 'visoin'; valid: text, vision, audio, multimodal, time-series, other",
        ),
        (("--tier", "urgent"), "unknown tier 'urgent'; valid: critical, high, medium, other"),
        (("--model", "nope"), "unknown model 'nope'"),
        (("--family", "encoder"), "unknown family 'encoder'"),
    ],
)
def test_bad_filter_is_one_clear_error(args, message):
    out = hfci("catalog", *args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unmatched_tiers_are_reported():
    out = hfci("catalog", "--unmatched-tiers")
    assert out.returncode == 0
    assert "Mistral-Next" in out.stdout


def test_a_closed_pipe_ends_quietly() -> None:
    """``hfci catalog --format json | head -1``: no BrokenPipeError traceback."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "hfci.cli", "catalog", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.readline().strip() == b"{"
    reader.stdout.close()  # what head does once it has its line
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_the_noxfile_turns_leading_bare_words_into_categories() -> None:
    """`nox -s models -- vision -k vit`: the session's own options come before the posargs."""
    spec = importlib.util.spec_from_file_location("hfci_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    assert noxfile.model_args(["vision", "audio", "-k", "vit"]) == [
        "--category",
        "vision",
        "--category",
        "audio",
        "-k",
        "vit",
    ]
    assert noxfile.model_args(["--tier", "critical", "-k", "vision"]) == [
        "--tier",
        "critical",
        "-k",
        "vision",
    ]


def test_entries_that_do_not_apply_are_listed(tmp_path: Path) -> None:
    # A project's own entries, for a model type this release lacks and for an older release.
    (tmp_path / "pyproject.toml").write_text(
        "[tool.hfci.models.no_such_model]\n"
        "config = { hidden_size = 8 }\n\n"
        "[[tool.hfci.models.bert.known_failures]]\n"
        'check = "forward"\nhead = "ForMaskedLM"\nraises = "ValueError"\nreason = "fixed upstream since"\ntransformers = "<5"\n',
        encoding="utf-8",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "hfci.cli", "catalog", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)

    import transformers

    version = transformers.__version__
    listed = run("--unmatched-entries")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert f"no_such_model\tnot a model type of transformers {version}" in lines
    assert "bert\tknown failure (forward of ForMaskedLM) is for transformers <5" in lines
    table = run("--model", "bert")
    assert (
        f"entries of {len({line.split(chr(9))[0] for line in lines})} model types do not apply"
        in table.stdout
    )
    payload = json.loads(run("--format", "json", "--model", "bert").stdout)
    assert {
        "model_type": "no_such_model",
        "reason": f"not a model type of transformers {version}",
    } in payload["unmatched_entries"]
