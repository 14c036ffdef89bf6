"""A crashing, hanging or memory-hungry backend costs one case, never the run.

A throwaway project plants a runner that segfaults (through ctypes), aborts, exits, hangs or
allocates past the memory ceiling, on bert only; the same command with nothing planted is the
clean run every other case is compared with.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from hfci.factory import MissingDependency
from hfci.project import ProjectError, tool_table
from hfci.pytest.cases import fails_as_expected, raised
from hfci.pytest.isolation import default_max_memory, parse_memory, release_memory, rss_bytes

PLANTED = """
    import ctypes, os, time

    import torch

    from hfci.runners import eager


    def planted(model, inputs):
        kind = os.environ.get("HFCI_PLANT", "")
        if kind and type(model).__name__.startswith("Bert"):
            if kind == "segv":
                ctypes.string_at(0)
            elif kind == "abort":
                os.abort()
            elif kind == "exit":
                os._exit(3)
            elif kind == "hang":
                while True:
                    pass
            elif kind == "hog":
                hoard = torch.ones(3 * 2**28)  # 3 GiB, every page touched
                time.sleep(60)
                return hoard
        return eager(model, inputs)


    twin = eager
"""
# Loaded with -p in the controller and the workers: bert/Model's planted parity is a known failure.
EXPECT = """
    import hfci.data

    _real = hfci.data.model_entry


    def _entry(model_type):
        if model_type != "bert":
            return _real(model_type)
        failure = {"check": "parity", "runner": "planted", "head": "Model", "reason": "it crashes, on purpose"}
        return {"known_failures": [{**failure, "expect": os.environ["HFCI_EXPECT"]}]}


    hfci.data.model_entry = _entry
"""
PYPROJECT = """
    [tool.hfci.runners]
    planted = "planted:planted"
    twin = "planted:twin"
"""
SELECTION = ["--model", "bert", "--model", "gpt2", "--one-head", "--device", "cpu"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "planted.py").write_text(textwrap.dedent(PLANTED).lstrip())
    (root / "expectplug.py").write_text("import os\n" + textwrap.dedent(EXPECT).lstrip())
    (root / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT).lstrip())
    return root


def command(out: Path, workers: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hfci.cli",
        "run",
        *SELECTION,
        "--runner",
        "planted",
        "--runner",
        "twin",
        "--workers",
        workers,
        "--timeout",
        "15",
        "--max-memory",
        "2GiB",
        "--results-dir",
        str(out),
        *extra,
    ]


def environment(project: Path, plant: str, **more: str) -> dict[str, str]:
    path = os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HFCI_PLANT": plant, **more}


def run(project: Path, plant: str, workers: str, *extra: str, **env: str) -> tuple[int, dict[str, Any], str]:
    out = project / f"results-{plant or 'clean'}-{workers}-{len(extra)}"
    done = subprocess.run(
        command(out, workers, *extra),
        cwd=project,
        capture_output=True,
        text=True,
        env=environment(project, plant, **env),
        timeout=300,
    )
    payload = json.loads((out / "results-cpu.json").read_text())
    return done.returncode, payload, done.stdout[-3000:] + done.stderr[-2000:]


def outcomes(payload: dict[str, Any], model_type: str | None = None) -> dict[tuple[str, str, str], str]:
    return {
        (r["case"], r["check"], r["runner"]): r["outcome"]
        for r in payload["records"]
        if model_type is None or r["model_type"] == model_type
    }


def record(payload: dict[str, Any], case: str, runner: str) -> dict[str, Any]:
    (found,) = [r for r in payload["records"] if r["case"] == case and r["runner"] == runner]
    return found


@pytest.fixture(scope="module")
def clean(project: Path) -> dict[str, Any]:
    code, payload, output = run(project, "", "2")
    assert code == 0, output
    assert set(outcomes(payload).values()) == {"passed"}
    return payload


@pytest.mark.parametrize("workers", ["2", "0"])
@pytest.mark.parametrize(
    ("plant", "why"),
    [
        ("segv", "killed by signal 11 (SIGSEGV)"),
        ("abort", "killed by signal 6 (SIGABRT)"),
        ("exit", "its process exited with code 3"),
        ("hog", "exceeded the memory ceiling"),
    ],
)
def test_a_crash_costs_exactly_its_case(project, clean, plant: str, why: str, workers: str) -> None:
    code, payload, output = run(project, plant, workers)
    assert code == 1, output  # failures, not pytest's internal error (3)
    assert payload["complete"] is True
    crashed = record(payload, "bert/Model", "planted")
    assert crashed["outcome"] == "crashed" and why in crashed["reason"], crashed
    # The rest of the crashed case is not fed to the next worker to crash it again.
    rest = record(payload, "bert/Model", "twin")
    assert rest["outcome"] == "skipped" and rest["reason"].startswith("not run: its case crashed in parity")
    assert outcomes(payload, "gpt2") == outcomes(clean, "gpt2")
    assert "CRASHED (1)" in output


@pytest.mark.parametrize("workers", ["2", "0"])
def test_a_hang_costs_its_check_at_the_timeout(project, clean, workers: str) -> None:
    code, payload, output = run(project, "hang", workers)
    assert code == 1, output
    hung = record(payload, "bert/Model", "planted")
    assert hung["outcome"] == "failed" and "Timeout (>15.0s)" in hung["reason"]
    assert {k: v for k, v in outcomes(payload).items() if k[2] != "planted" or k[0] != "bert/Model"} == {
        k: v for k, v in outcomes(clean).items() if k[2] != "planted" or k[0] != "bert/Model"
    }


def test_a_known_failure_that_expects_the_crash_is_expected(project, clean) -> None:
    code, payload, output = run(project, "segv", "2", "-p", "expectplug", HFCI_EXPECT="crash")
    assert code == 0, output
    crashed = record(payload, "bert/Model", "planted")
    assert crashed["outcome"] == "xfailed" and crashed["reason"] == "it crashes, on purpose"
    # Expecting a crash, a hang is a failure of its own.
    code, payload, output = run(project, "hang", "2", "-p", "expectplug", HFCI_EXPECT="crash")
    assert code == 1 and record(payload, "bert/Model", "planted")["outcome"] == "failed", output


def test_a_known_failure_that_expects_a_timeout_is_expected(project, clean) -> None:
    code, payload, output = run(project, "hang", "0", "-p", "expectplug", HFCI_EXPECT="timeout")
    assert code == 0, output
    assert record(payload, "bert/Model", "planted")["outcome"] == "xfailed"
    # Expecting a timeout, a crash is not it.
    code, payload, output = run(project, "segv", "0", "-p", "expectplug", HFCI_EXPECT="timeout")
    assert code == 1 and record(payload, "bert/Model", "planted")["outcome"] == "crashed", output


def test_a_known_failure_names_what_it_expects() -> None:
    timeout = pytest.fail.Exception("Timeout (>15.0s) from pytest-timeout.")
    assert fails_as_expected({"expect": "timeout"}, timeout)
    assert not fails_as_expected({"expect": "timeout"}, ValueError("shapes"))
    assert not fails_as_expected({"expect": "crash"}, ValueError("shapes"))
    # A build error is matched by what the build raised, through the chain of causes.
    try:
        try:
            raise AttributeError("'Qwen2Config' object has no attribute 'text_config'")
        except AttributeError as cause:
            raise pytest.fail.Exception("build: building failed", pytrace=False) from cause
    except pytest.fail.Exception as failed:
        build = failed
    assert fails_as_expected({"raises": "AttributeError", "match": "no attribute 'text_config'"}, build)
    assert raised(build) == "AttributeError: 'Qwen2Config' object has no attribute 'text_config'"
    assert not fails_as_expected({"raises": "AttributeError", "match": "hidden_size"}, build)
    assert not fails_as_expected({"raises": "TypeError"}, build)
    # A base class names its subclasses.
    assert fails_as_expected({"raises": "FactoryError"}, MissingDependency("timm"))
    assert not fails_as_expected({"raises": "FactoryError"}, ValueError("shapes"))


def test_a_known_failure_that_says_nothing_of_how_it_fails_is_refused(tmp_path) -> None:
    entries = {
        "says neither what it raises": '{ check = "parity", head = "*", reason = "my kernel" }',
        r"match = '\(\[' is no regular expression": '{ check = "parity", reason = "x", match = "([" }',
    }
    for i, (message, entry) in enumerate(entries.items()):
        pyproject = tmp_path / str(i) / "pyproject.toml"
        pyproject.parent.mkdir()
        pyproject.write_text(f"[tool.hfci.models.bert]\nknown_failures = [{entry}]\n")
        with pytest.raises(ProjectError, match=message):
            tool_table("models", pyproject)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_within_seconds_with_a_partial_file(project, tmp_path, signum) -> None:
    out = tmp_path / "results"
    argv = command(out, "2", "--results-every", "0")
    argv[argv.index("twin")] = "eager"  # every check of each case, and bert's planted parity hangs
    child = subprocess.Popen(
        argv,
        cwd=project,
        env=environment(project, "hang"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = out / "results-cpu.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        path.exists() and len(json.loads(path.read_text())["records"]) >= 3
    ):
        time.sleep(0.2)
    seen = json.loads(path.read_text())["records"]
    started = time.monotonic()
    child.send_signal(signum)
    child.wait(timeout=30)
    assert time.monotonic() - started < 10
    final = json.loads(path.read_text())
    assert final["complete"] is False
    keys = {(r["case"], r["check"], r["runner"]) for r in final["records"]}
    assert {(r["case"], r["check"], r["runner"]) for r in seen} <= keys


@pytest.mark.parametrize(
    ("text", "size"), [("8GiB", 8 * 2**30), ("512M", 512 * 2**20), ("1.5g", 3 * 2**29), ("0", 0)]
)
def test_memory_sizes_read_as_people_write_them(text: str, size: int) -> None:
    assert parse_memory(text) == size


def test_a_bad_memory_ceiling_is_one_clear_error(project) -> None:
    done = subprocess.run(
        [*command(project / "unused", "0", "--max-memory", "lots")],
        cwd=project,
        capture_output=True,
        text=True,
        env=environment(project, ""),
    )
    assert done.returncode == 4
    assert "bad --max-memory 'lots'; expected a size such as 8GiB, 512MiB or 0 (no ceiling)" in done.stderr
    assert not (project / "unused").exists()


def test_the_default_ceiling_shares_four_fifths_of_the_machine() -> None:
    assert (
        0
        < default_max_memory(2)
        < default_max_memory(1)
        <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    )


def test_memory_left_in_garbage_cycles_is_given_back_between_cases() -> None:
    """What the benchmark's memory profile leaves (cyclic garbage) is freed at the next case."""
    mark = rss_bytes()
    if mark is None:
        pytest.skip("no /proc here")
    node: dict[str, object] = {"payload": b"x" * (400 << 20)}
    node["self"] = node  # a cycle: only the collector frees it
    del node
    grown = rss_bytes()
    assert grown is not None and grown - mark > 300 << 20
    after = release_memory(mark)
    assert after is not None and grown - after > 300 << 20
