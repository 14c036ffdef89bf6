"""The model tests: each check of ``hfci.checks`` as its own test, over every selected case.

Run with ``pytest --pyargs hfci.suite --run-model-tests`` (``hfci run`` does this for you).
"""

from __future__ import annotations

import pytest

from hfci import checks
from hfci.plugin import CaseSpec, built_case, reference_output, remember_reference


def _run(check, *args) -> None:
    try:
        check(*args)
    except checks.CheckSkipped as why:
        pytest.skip(str(why))


def test_forward(hfci_case: CaseSpec) -> None:
    """Runs; outputs finite, with the expected leading shapes."""
    remember_reference(checks.check_forward(built_case(hfci_case)))


def test_determinism(hfci_case: CaseSpec) -> None:
    """Two forwards in eval mode agree."""
    checks.check_determinism(built_case(hfci_case), reference_output(hfci_case))


def test_save_load(hfci_case: CaseSpec) -> None:
    """save_pretrained then from_pretrained (offline, safetensors) gives the same outputs."""
    checks.check_save_load(built_case(hfci_case), reference_output(hfci_case))


def test_generate(hfci_case: CaseSpec) -> None:
    """Generative heads produce greedy tokens of the right shape."""
    _run(checks.check_generate, built_case(hfci_case))


def test_pipeline(hfci_case: CaseSpec) -> None:
    """The head's pipeline task runs with processors built offline."""
    _run(checks.check_pipeline, built_case(hfci_case))
