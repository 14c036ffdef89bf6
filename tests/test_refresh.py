"""Shard deltas and their merge: each case from the one shard that measured it, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfci import baselines, matrix, refresh
from hfci.cli import main
from hfci.results import Record, write_results

FP = "cpu-some-cpu-torch2.13.0-transformers5.23.0"
OTHER = "cuda-some-gpu-some-cpu-torch2.13.0-transformers5.23.0"


def rec(case: str, duration: float = 1.0, perf=None, changed=True, check: str = "benchmark") -> Record:
    metrics = {"perf": perf, "changed": changed} if perf else None
    model_type, head = case.split("/")
    return Record(case, model_type, head, "cpu", check, "passed", duration, metrics=metrics)


def committed(directory: Path, cases: dict[str, dict], fingerprint: str = FP) -> Path:
    """A baseline file as a refresh finds it on main."""
    payload = {
        "schema": baselines.SCHEMA,
        "fingerprint": fingerprint,
        "environment": {"device": "cpu", "date": "2020-01-01"},
        "cases": cases,
    }
    path = baselines.path_for(fingerprint, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return path


def shard_delta(
    directory: Path,
    base_dir: Path,
    records: list[Record],
    shard: str | None,
    complete: bool = True,
    fingerprint: str = FP,
) -> Path:
    """A delta written as the session writes one (see HfciSession._update_baselines)."""
    target = baselines.path_for(fingerprint, base_dir)
    return baselines.write_delta(
        directory, target, records, {"device": "cpu"}, fingerprint, shard=shard, complete=complete
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


SEED = {
    "a/Model": {"checks": {"benchmark": "passed"}, "duration": 2.0, "perf": {"ratio": 2.0}},
    "b/Model": {
        "checks": {"benchmark": "passed"},
        "duration": 2.0,
        "perf": {"ratio": 3.0},
        "note": "slow on AMD",
    },
    "c/Model": {"checks": {"benchmark": "passed"}, "duration": 2.0, "perf": {"ratio": 4.0}},
}


def test_a_delta_holds_only_what_the_run_measured_as_merge_computes_it(tmp_path):
    path = committed(tmp_path / "baselines", SEED)
    base = baselines.load(path)
    records = [rec("a/Model", perf={"ratio": 2.1}, changed=False), rec("d/Model", perf={"ratio": 9.0})]
    delta = baselines.delta(
        base, records, {"device": "cpu"}, FP, base=baselines.digest(path), shard="2/3", complete=True
    )
    merged = baselines.merge(base, records, {"device": "cpu"}, FP)
    assert set(delta.cases) == {"a/Model", "d/Model"}  # no stale copies of b and c
    assert delta.cases == {k: merged.cases[k] for k in ("a/Model", "d/Model")}
    assert delta.cases["a/Model"].perf == {"ratio": 2.0}  # unchanged: not rewritten
    assert delta.base == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    written = baselines.delta_path(tmp_path / "d", FP, "2/3")
    assert written.name == f"{FP}.2-of-3.delta.json"
    written.parent.mkdir()
    written.write_text(json.dumps(delta.to_dict()))
    assert baselines.load_delta(written) == delta
    assert baselines.delta_path(tmp_path, FP, None).name == f"{FP}.all.delta.json"
    assert baselines.digest(tmp_path / "none.json") is None


def test_merge_takes_each_case_from_its_shard_and_keeps_the_rest(tmp_path, capsys):
    into = tmp_path / "baselines"
    committed(into, SEED)
    shards = tmp_path / "shards"
    shard_delta(shards / "s1", into, [rec("a/Model", 9.0, {"ratio": 2.5})], "1/2")
    shard_delta(shards / "s2", into, [rec("b/Model", 9.0, {"ratio": 3.5})], "2/2")
    durations = tmp_path / "durations.json"
    matrix.write_durations(
        {("a/Model", "cpu"): 2.0, ("c/Model", "cpu"): 2.0, ("x/Model", "cuda"): 5.0}, durations
    )
    assert main(["baselines", "merge", str(shards), "--into", str(into), "--durations", str(durations)]) == 0
    out = capsys.readouterr().out
    assert f"{FP}: 2 cases re-measured (2 changed) from shard 1/2, shard 2/2" in out
    cases = baselines.load(baselines.path_for(FP, into)).cases
    assert cases["a/Model"].perf == {"ratio": 2.5} and cases["a/Model"].duration == 9.0
    assert cases["b/Model"].perf == {"ratio": 3.5}
    assert cases["b/Model"].extra == {"note": "slow on AMD"}  # the hand-written note survives
    assert cases["c/Model"].perf == {"ratio": 4.0}  # measured by nobody: as committed
    assert matrix.read_durations([durations]) == {
        ("a/Model", "cpu"): 9.0,
        ("b/Model", "cpu"): 9.0,
        ("c/Model", "cpu"): 2.0,
        ("x/Model", "cuda"): 5.0,
    }


def test_a_hand_edit_after_the_shards_started_is_kept(tmp_path):
    into = tmp_path / "baselines"
    committed(into, SEED)
    delta = shard_delta(tmp_path / "d", into, [rec("b/Model", 9.0, {"ratio": 3.5})], "1/1")
    edited = {**SEED, "b/Model": {**SEED["b/Model"], "note": "fixed in 5.24"}, "c/Model": {"checks": {}}}
    committed(into, edited)
    result = refresh.refresh(refresh.read([delta]), into)
    (folded,) = result.baselines.values()
    assert folded.cases["b/Model"].extra == {"note": "fixed in 5.24"}
    assert folded.cases["b/Model"].perf == {"ratio": 3.5}
    assert folded.cases["c/Model"].to_dict() == {"checks": {}}
    assert any("started from another version of the baseline" in line for line in result.summary())


def test_an_incomplete_shard_is_skipped_and_named_and_missing_shards_too(tmp_path, capsys):
    into = tmp_path / "baselines"
    committed(into, SEED)
    done = shard_delta(tmp_path / "d", into, [rec("a/Model", 9.0, {"ratio": 2.5})], "1/3")
    cut = shard_delta(tmp_path / "d", into, [rec("b/Model", 9.0, {"ratio": 7.0})], "2/3", complete=False)
    args = ["baselines", "merge", str(tmp_path / "d"), "--into", str(into), "--expect-shards", "3"]
    before = snapshot(into)
    assert main([*args, "--require-all"]) == 2
    err = capsys.readouterr().err
    assert f"skipped: {cut} (shard 2/3 did not complete)" in err and "missing: shard 3/3" in err
    assert snapshot(into) == before
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"skipped: {cut} (shard 2/3 did not complete)" in out
    assert "missing: shard 3/3 (no delta)" in out
    cases = baselines.load(baselines.path_for(FP, into)).cases
    assert cases["a/Model"].perf == {"ratio": 2.5}
    assert cases["b/Model"].perf == {"ratio": 3.0}  # the cut shard's figure did not land
    assert done.exists()
    # Without --expect-shards the deltas' own "K/3" says a third shard is missing.
    assert main(args[:-2]) == 0
    assert "missing: shard 3/3 (no delta)" in capsys.readouterr().out


def test_only_incomplete_deltas_write_nothing(tmp_path, capsys):
    into = tmp_path / "baselines"
    committed(into, SEED)
    shard_delta(tmp_path / "d", into, [rec("a/Model", 9.0, {"ratio": 2.5})], "1/1", complete=False)
    before = snapshot(into)
    durations = tmp_path / "durations.json"
    assert (
        main(["baselines", "merge", str(tmp_path / "d"), "--into", str(into), "--durations", str(durations)])
        == 0
    )
    assert "no complete delta" in capsys.readouterr().out
    assert snapshot(into) == before and not durations.exists()


def test_two_deltas_claiming_one_case_are_refused_and_nothing_is_written(tmp_path, capsys):
    into = tmp_path / "baselines"
    committed(into, SEED)
    first = shard_delta(tmp_path / "d", into, [rec("a/Model"), rec("b/Model")], "1/2")
    second = shard_delta(tmp_path / "d", into, [rec("b/Model"), rec("c/Model")], "2/2")
    before = snapshot(into)
    assert main(["baselines", "merge", str(tmp_path / "d"), "--into", str(into)]) == 2
    err = capsys.readouterr().err
    assert str(first) in err and str(second) in err and "'b/Model'" in err
    assert snapshot(into) == before


def test_a_shard_of_another_count_than_expected_is_refused(tmp_path, capsys):
    delta = shard_delta(tmp_path / "d", tmp_path / "b", [rec("a/Model")], "2/4")
    assert (
        main(["baselines", "merge", str(delta), "--into", str(tmp_path / "b"), "--expect-shards", "3"]) == 2
    )
    assert "shard 2/4, but --expect-shards 3" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "in" / "garbage.delta.json"
    garbage.parent.mkdir(parents=True)
    garbage.write_text("{not json")
    full = committed(tmp_path / "full", SEED)
    other = tmp_path / "in" / "other.json"
    other.write_text(json.dumps({"schema": "hfci-results/1", "records": []}))
    good = shard_delta(tmp_path / "good", tmp_path / "nowhere", [rec("a/Model")], "1/2")
    payload = json.loads(good.read_text())
    two = tmp_path / "in" / "two.delta.json"
    two.write_text(json.dumps({**payload, "fingerprint": [FP, OTHER]}))
    renamed = tmp_path / "in" / f"{OTHER}.1-of-2.delta.json"
    renamed.write_text(good.read_text())
    return {
        "missing": (tmp_path / "nonexistent", f"no such delta file or directory: {tmp_path / 'nonexistent'}"),
        "garbage": (garbage, f"{garbage}: not a readable JSON file"),
        "full baseline": (
            full,
            "a baseline, not a delta: shards upload deltas written with --baseline-delta",
        ),
        "full baseline in a directory": (full.parent, f"{full}: a baseline, not a delta"),
        "another schema": (other, f"{other}: not a baseline delta (schema 'hfci-results/1')"),
        "two fingerprints": (two, "expected one device fingerprint"),
        "name and contents disagree": (renamed, f"its name says fingerprint {OTHER!r}"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "garbage",
        "full baseline",
        "full baseline in a directory",
        "another schema",
        "two fingerprints",
        "name and contents disagree",
    ],
)
def test_bad_merge_input_is_one_clear_error_and_nothing_is_written(tmp_path, capsys, case):
    source, message = _bad_inputs(tmp_path)[case]
    into = tmp_path / "baselines"
    committed(into, SEED)
    before = snapshot(into)
    good = tmp_path / "good"
    assert main(["baselines", "merge", str(good), str(source), "--into", str(into)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1  # one line
    assert snapshot(into) == before


def test_bad_learn_input_is_one_clear_error_and_nothing_is_written(tmp_path, capsys):
    into = tmp_path / "baselines"
    committed(into, SEED)
    before = snapshot(into)
    good = write_results(
        tmp_path / "runs", "cpu", [rec("a/Model", perf={"ratio": 2.2}, changed=False)], {"fingerprint": FP}
    )
    assert main(["baselines", "learn", str(good), str(tmp_path / "nonexistent"), "--into", str(into)]) == 2
    assert f"no such results file or directory: {tmp_path / 'nonexistent'}" in capsys.readouterr().err
    baseline_file = baselines.path_for(FP, into)
    assert main(["baselines", "learn", str(good), str(baseline_file), "--into", str(into)]) == 2
    assert (
        f"{baseline_file}: unknown schema 'hfci-baseline/1'; expected 'hfci-results/1'"
        in capsys.readouterr().err
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["baselines", "learn", str(empty), "--into", str(into)]) == 2
    assert f"no results-*.json files under {empty}" in capsys.readouterr().err
    assert snapshot(into) == before
