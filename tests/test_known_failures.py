"""The plugin and the report read models.toml's known failures the same way, entry by entry.

The plugin marks a check as an expected failure; the report names the reason of an expected
failure that arrived without one (a baseline keeps outcomes only). Both must pick the same entry
for every check every entry covers, or a report calls expected what the run called a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hfci import data
from hfci.catalog import load_catalog
from hfci.pytest.cases import CaseSpec, known_failure
from hfci.report import known_failure_reason
from hfci.results import CHECKS, Record


def _names(value: str | list[str], every: list[str]) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    return every if "*" in values else values


def covered() -> Iterator[tuple[str, str, str, str, str]]:
    """(model type, head, check, device, runner) of every check each known failure names."""
    catalog = load_catalog()
    for model_type, entry in sorted(data.load("models").items()):
        record = catalog.records.get(model_type)
        if record is None or not record.has_model:
            continue
        for failure in entry.get("known_failures", []):
            heads = _names(failure.get("head", "*"), [h.name for h in record.heads])
            for head in heads:
                for check in _names(failure.get("check", "*"), list(CHECKS)):
                    default_runner = "sdpa" if check == "parity" else "eager"
                    runner = failure.get("runner", default_runner)
                    for device in _names(failure.get("device", "cpu"), ["cpu"]):
                        yield (
                            model_type,
                            head,
                            check,
                            device,
                            runner if isinstance(runner, str) else runner[0],
                        )


CASES = sorted(set(covered()))


def test_every_entry_is_covered() -> None:
    with_failures = [m for m, e in data.load("models").items() if e.get("known_failures")]
    assert len({case[0] for case in CASES}) >= len(with_failures) * 0.9, "most entries name installed types"
    assert len(CASES) > 100


@pytest.mark.parametrize(("model_type", "head", "check", "device", "runner"), CASES)
def test_plugin_and_report_agree(model_type: str, head: str, check: str, device: str, runner: str) -> None:
    catalog = load_catalog()
    record = catalog[model_type]
    marked = known_failure(CaseSpec(record, head, device, runner), check)
    row = Record(f"{model_type}/{head}", model_type, head, device, check, "xfailed", 0.0, runner=runner)
    named = known_failure_reason(row, catalog.transformers_version)
    assert (marked or "") == named


def test_an_entry_for_another_release_covers_nothing_in_either() -> None:
    # Entries scoped to a transformers range: outside it, neither the plugin nor the report matches.
    catalog = load_catalog()
    scoped = [
        (m, f)
        for m, e in data.load("models").items()
        for f in e.get("known_failures", [])
        if f.get("transformers") and f.get("head", "*") == "*" and isinstance(f.get("check", "*"), str)
    ]
    assert scoped
    model_type, failure = scoped[0]
    record = catalog[model_type]
    check = failure.get("check", "*")
    check = "forward" if check == "*" else check
    runner = failure.get("runner", "sdpa" if check == "parity" else "eager")
    row = Record(
        f"{model_type}/{record.heads[0].name}",
        model_type,
        record.heads[0].name,
        "cpu",
        check,
        "xfailed",
        0.0,
        runner=runner,
    )
    assert known_failure_reason(row, "1.0.0") == ""
    assert data.known_failure(model_type, row.head, check, "cpu", runner, "1.0.0") is None
