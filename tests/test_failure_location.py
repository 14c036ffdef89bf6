"""A failure's reason names the line it reached in transformers, which an upgrade's diff shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# A real failure inside transformers (an unknown model type), and one raised by the test itself.
TESTS = """
import transformers

def test_inside_transformers():
    transformers.AutoConfig.for_model("no-such-model-type")

def test_outside_transformers():
    assert 1 == 2, "plain failure"
"""

# Records what hfci's session makes of each failed report.
CONFTEST = """
import json
from hfci.pytest.session import _reason

def pytest_runtest_logreport(report):
    if report.when == "call" and report.failed:
        with open("reasons.jsonl", "a") as out:
            out.write(json.dumps({"test": report.nodeid, "reason": _reason(report)}) + "\\n")
"""


def test_a_failure_names_the_innermost_transformers_line(tmp_path: Path) -> None:
    (tmp_path / "test_fails.py").write_text(TESTS)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hfci", "test_fails.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stdout[-2000:]
    lines = (tmp_path / "reasons.jsonl").read_text().splitlines()
    reasons = {r["test"].split("::")[1]: r["reason"] for r in map(json.loads, lines)}
    inside = reasons["test_inside_transformers"]
    assert inside.startswith("ValueError: Unrecognized model identifier: no-such-model-type")
    assert inside.endswith(")") and "(at transformers/models/auto/configuration_auto.py:" in inside
    assert reasons["test_outside_transformers"].startswith("AssertionError: plain failure")
    assert "(at " not in reasons["test_outside_transformers"]


def test_what_an_expected_failure_raised_names_its_transformers_line_too() -> None:
    import transformers

    from hfci.pytest.cases import raised

    try:
        transformers.AutoConfig.for_model("no-such-model-type")
    except ValueError as error:
        text = raised(error)
    assert text.startswith("ValueError: Unrecognized model identifier: no-such-model-type")
    assert "(at transformers/models/auto/configuration_auto.py:" in text
    assert raised(RuntimeError("plain")) == "RuntimeError: plain"
