"""ci/newest_transformers.py: the upgrade workflow's first question, answered from PyPI's JSON offline."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ci" / "newest_transformers.py"
_spec = importlib.util.spec_from_file_location("newest_transformers", SCRIPT)
assert _spec and _spec.loader
newest_transformers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(newest_transformers)


def wheel(yanked: bool = False) -> dict[str, Any]:
    return {"filename": "transformers-x-py3-none-any.whl", "packagetype": "bdist_wheel", "yanked": yanked}


def payload(**versions: list[dict[str, Any]]) -> dict[str, Any]:
    """PyPI's JSON of transformers, the parts read: version -> its files."""
    return {
        "info": {"name": "transformers"},
        "releases": {v.replace("_", "."): f for v, f in versions.items()},
    }


# Keyword names cannot hold dots: 5_9_0 is 5.9.0.
PYPI = payload(
    **{
        "5_9_0": [wheel()],
        "5_10_0": [wheel()],  # newer than 5.9.0 as a version, older as a string
        "5_23_0": [wheel()],
        "5_24_0": [wheel(), wheel()],
        "5_25_0rc1": [wheel()],
        "5_26_0_dev0": [wheel()],
        "5_24_1": [wheel(yanked=True)],  # withdrawn
        "5_24_2": [],  # nothing to install
        "not_a_version": [wheel()],
    }
)


def test_the_pin_is_the_noxfiles_default_spec_and_what_models_yml_runs() -> None:
    pin = newest_transformers.pinned((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    assert Version(pin)  # a version, not a spec
    assert f"transformers-spec: transformers=={pin}" in (ROOT / ".github/workflows/models.yml").read_text()
    with pytest.raises(newest_transformers.ReleaseError, match="no pin in the noxfile"):
        newest_transformers.pinned('SPEC = os.environ.get("HFCI_TORCH_SPEC", "torch==2.13.0")')


def test_releases_skip_yanked_empty_and_unparsable_versions_in_version_order() -> None:
    assert [str(v) for v in newest_transformers.releases(PYPI)] == [
        "5.9.0",
        "5.10.0",
        "5.23.0",
        "5.24.0",
        "5.25.0rc1",
        "5.26.0.dev0",
    ]
    with pytest.raises(newest_transformers.ReleaseError, match="no 'releases' table"):
        newest_transformers.releases({"info": {}})


def test_the_newest_is_the_highest_final_release() -> None:
    available = newest_transformers.releases(PYPI)
    assert newest_transformers.newest(available) == Version("5.24.0")
    assert newest_transformers.newest([Version("5.25.0rc1")]) is None


@pytest.mark.parametrize(
    ("pin", "named", "expected"),
    [
        ("5.23.0", "", ("5.24.0", True, "transformers 5.24.0 is newer than the pin 5.23.0")),
        (
            "5.24.0",
            "",
            ("5.24.0", False, "the newest transformers on PyPI is 5.24.0, not newer than the pin 5.24.0"),
        ),
        (
            "5.25.0",
            "",
            ("5.24.0", False, "the newest transformers on PyPI is 5.24.0, not newer than the pin 5.25.0"),
        ),
        (
            "5.23.0",
            "5.25.0-rc1",
            ("5.25.0rc1", True, "transformers 5.25.0rc1 (named) against the pinned 5.23.0"),
        ),
        ("5.23.0", "5.9.0", ("5.9.0", True, "transformers 5.9.0 (named) against the pinned 5.23.0")),
        ("5.23.0", "5.23.0", ("5.23.0", False, "transformers 5.23.0 is the pin: nothing to compare")),
    ],
)
def test_decide(pin: str, named: str, expected: tuple[str, bool, str]) -> None:
    candidate, run, line = newest_transformers.decide(pin, newest_transformers.releases(PYPI), named)
    assert (candidate, run) == expected[:2]
    assert line.startswith(expected[2])


@pytest.mark.parametrize(
    ("named", "message"),
    [
        (
            "5.24.1",
            r"transformers 5\.24\.1 is not on PyPI \(or every file of it is yanked\); newest release: 5\.24\.0",
        ),
        ("6.0.0", r"6\.0\.0 is not on PyPI"),
        ("latest", r"--release 'latest': not a version"),
    ],
)
def test_a_named_release_must_be_on_pypi(named: str, message: str) -> None:
    with pytest.raises(newest_transformers.ReleaseError, match=message):
        newest_transformers.decide("5.23.0", newest_transformers.releases(PYPI), named)


def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env |= {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60
    )
    return done, output, summary


def test_the_command_sets_the_workflows_outputs_and_summary(tmp_path: Path) -> None:
    page = tmp_path / "pypi.json"
    page.write_text(json.dumps(PYPI))
    noxfile = tmp_path / "noxfile.py"
    noxfile.write_text(
        'TRANSFORMERS_SPEC = os.environ.get("HFCI_TRANSFORMERS_SPEC", "transformers==5.23.0")\n'
    )
    done, output, summary = run(tmp_path, "--pypi-json", str(page), "--noxfile", str(noxfile))
    assert done.returncode == 0, done.stderr
    text = output.read_text()
    for name, value in (("pin", "5.23.0"), ("candidate", "5.24.0"), ("run", "true")):
        delimiter, rest = text.split(f"{name}<<", 1)[1].split("\n", 1)
        assert rest.split(f"\n{delimiter}", 1)[0] == value, name
    assert "transformers 5.24.0 is newer than the pin 5.23.0" in summary.read_text()


def test_a_bad_page_or_release_is_one_error_and_no_output(tmp_path: Path) -> None:
    page = tmp_path / "pypi.json"
    page.write_text(json.dumps(PYPI))
    done, output, _ = run(tmp_path, "--pypi-json", str(page), "--release", "7.0.0")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "newest_transformers: error: --release 7.0.0: transformers 7.0.0 is not on PyPI (or every file of "
        "it is yanked); newest release: 5.24.0"
    ]
    assert not output.exists()
    page.write_text("<html>")
    done, output, _ = run(tmp_path, "--pypi-json", str(page))
    assert done.returncode == 2 and done.stderr.startswith("newest_transformers: error: ")
    assert not output.exists()
