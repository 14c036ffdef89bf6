"""The selection is declared once: every command and pytest read and write it the same way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hfci.catalog import load_catalog
from hfci.cli import build_parser
from hfci.errors import HfciError
from hfci.selection import CASE_OPTIONS, MODEL_OPTIONS, Selection, SelectionError

FULL = Selection(
    category=("text",),
    family=("encoder-only",),
    tier=("critical",),
    model=("bert", "xlm-roberta"),
    changed_since="results/results-cpu.json",
    device=("cpu",),
    runner=("sdpa",),
    one_head=True,
    shard="2/3",
)


def parse(*argv: str) -> Selection:
    return Selection.from_namespace(build_parser().parse_known_args(list(argv))[0])


@pytest.mark.parametrize("command", ["catalog", "run", "matrix", "report"])
def test_every_selecting_command_takes_the_model_options(command: str) -> None:
    chosen = Selection(category=("text",), family=("encoder-only",), tier=("critical",), model=("bert",))
    assert parse(command, *chosen.argv()) == chosen


@pytest.mark.parametrize("command", ["run", "matrix"])
def test_the_commands_that_run_or_plan_cases_take_the_case_options(command: str) -> None:
    chosen = Selection(device=("cpu",), runner=("sdpa",), one_head=True)
    assert parse(command, *chosen.argv()) == chosen


def test_argv_round_trips_through_hfci_run() -> None:
    assert parse("run", *FULL.argv()) == FULL
    assert FULL.argv()[:2] == ["--category", "text"] and FULL.argv()[-2:] == ["--shard", "2/3"]


def test_every_option_is_declared_for_pytest_too() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], capture_output=True, text=True
    )
    for option in (*MODEL_OPTIONS, *CASE_OPTIONS):
        assert option.flag in out.stdout, option.flag
    assert "--shard" in out.stdout and "--changed-since" in out.stdout


def test_one_head_keeps_the_base_head_of_each_type() -> None:
    catalog = load_catalog()
    every = Selection(model=("bert",)).case_ids(catalog)
    one = Selection(model=("bert",), one_head=True).case_ids(catalog)
    assert one == ["bert/Model"] and len(every) > 1 and set(one) < set(every)


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (Selection(category=("visoin",)), "unknown category 'visoin'; valid: text, vision"),
        (Selection(shard="4/3"), "bad shard '4/3'"),
        (Selection(model=("xlm-robert",)), "unknown model 'xlm-robert'"),
    ],
)
def test_a_bad_value_is_one_clear_error(selection: Selection, message: str) -> None:
    with pytest.raises(HfciError, match=message):
        selection.validate(load_catalog())


def test_with_values_names_an_unknown_option() -> None:
    with pytest.raises(SelectionError, match="unknown selection option 'colour'; valid: category"):
        FULL.with_values(colour=("red",))
