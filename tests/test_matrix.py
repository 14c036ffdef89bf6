"""The matrix planner: cases, durations, LPT shards, devices.toml, plans, and ``hfci matrix``."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from hfci import matrix
from hfci.catalog import load_catalog
from hfci.cli import main
from hfci.errors import HfciError
from hfci.selection import Selection, SelectionError, parse_shard

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "matrices" / "devices.toml"


@pytest.fixture(scope="module")
def cases() -> list[str]:
    return Selection().case_ids(load_catalog())


def heavy_tailed(cases: list[str], seed: int = 0) -> dict[str, float]:
    """Durations shaped like real ones: most cases small, a few multimodal giants."""
    rng = random.Random(seed)
    return {case: round(rng.lognormvariate(0.5, 1.2), 3) for case in cases}


def write_results(path: Path, device: str, records: list[tuple[str, str, float]]) -> Path:
    payload = {
        "schema": "hfci-results/1",
        "device": device,
        "fingerprint": "test",
        "records": [
            {
                "case": case,
                "model_type": case.split("/")[0],
                "head": case.split("/")[1],
                "device": device,
                "check": check,
                "outcome": "passed",
                "duration": seconds,
                "reason": "",
            }
            for case, check, seconds in records
        ],
    }
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- cases and durations -----------------------------------------------------------------------


def test_case_ids_are_model_type_slash_head_sorted_and_unique(cases: list[str]) -> None:
    assert "xlm-roberta/ForMaskedLM" in cases
    assert "bert/Model" in cases
    assert cases == sorted(set(cases))
    catalog = load_catalog()
    assert len(cases) == sum(len(r.heads) for r in catalog if r.has_model)
    assert not any(c.startswith(f"{r.model_type}/") for r in catalog if not r.has_model for c in cases)


def test_read_durations_sums_checks_and_later_files_win(tmp_path: Path) -> None:
    first = write_results(
        tmp_path / "results-cpu.json",
        "cpu",
        [
            ("bert/Model", "forward", 0.1),
            ("bert/Model", "save_load", 0.25),
            ("gpt2/ForCausalLM", "forward", 1.0),
        ],
    )
    rerun = tmp_path / "rerun"
    rerun.mkdir()
    write_results(rerun / "results-cpu.json", "cpu", [("gpt2/ForCausalLM", "forward", 2.0)])
    durations = matrix.read_durations([first, rerun])
    assert durations == {("bert/Model", "cpu"): 0.35, ("gpt2/ForCausalLM", "cpu"): 2.0}
    assert matrix.durations_for(durations, "cpu") == {"bert/Model": 0.35, "gpt2/ForCausalLM": 2.0}
    assert matrix.durations_for(durations, "cuda") == {}


def test_durations_file_round_trips(tmp_path: Path) -> None:
    durations = {("bert/Model", "cpu"): 0.35, ("bert/Model", "cuda"): 0.05, ("vit/Model", "cpu"): 1.5}
    path = matrix.write_durations(durations, tmp_path / "durations.json")
    assert matrix.read_durations([path]) == durations
    # Sorted keys and a stable layout keep a refresh a small diff.
    assert path.read_text() == matrix.write_durations(dict(reversed(durations.items())), path).read_text()


def test_results_directories_are_searched_recursively(tmp_path: Path) -> None:
    for shard in (1, 2):
        folder = tmp_path / f"results-cpu-{shard}-of-2"
        folder.mkdir()
        write_results(folder / "results-cpu.json", "cpu", [(f"case{shard}/Model", "forward", 1.0)])
    assert set(matrix.read_durations([tmp_path])) == {("case1/Model", "cpu"), ("case2/Model", "cpu")}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a readable JSON file"),
        ('{"schema": "other/1"}', "unknown schema 'other/1'"),
        ('{"schema": "hfci-results/1", "device": "cpu", "records": [{"duration": 1}]}', "malformed record"),
    ],
)
def test_bad_results_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "results-cpu.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(HfciError, match=message):
        matrix.read_durations([path])
    with pytest.raises(HfciError, match="no such results file"):
        matrix.read_durations([tmp_path / "missing.json"])


def test_estimate_is_the_median_or_the_default() -> None:
    assert matrix.estimate([1.0, 2.0, 100.0]) == 2.0
    assert matrix.estimate([]) == matrix.DEFAULT_ESTIMATE
    assert matrix.with_estimates(["a", "b", "c"], {"a": 1.0, "b": 3.0, "z": 8.0}) == {
        "a": 1.0,
        "b": 3.0,
        "c": 3.0,
    }


# -- sharding ----------------------------------------------------------------------------------


def test_balance_is_lpt_with_deterministic_ties() -> None:
    durations = {"a": 7.0, "b": 6.0, "c": 5.0, "d": 4.0, "e": 3.0, "f": 3.0}
    assert matrix.balance(durations, 2) == [["a", "d", "e"], ["b", "c", "f"]]  # e: tie at 11, lower index
    # Equal durations: round robin in case-id order, whatever order the dict came in.
    equal = {f"m{i:02d}": 1.0 for i in range(6)}
    shuffled = dict(sorted(equal.items(), key=lambda kv: random.Random(1).random()))
    assert (
        matrix.balance(shuffled, 3)
        == matrix.balance(equal, 3)
        == [["m00", "m03"], ["m01", "m04"], ["m02", "m05"]]
    )


@pytest.mark.parametrize("count", [4, 8, 16])
def test_shards_cover_the_selection_exactly(cases: list[str], count: int) -> None:
    # Durations for most cases only: the rest take the estimate, as after adding a model.
    recorded = {case: s for case, s in heavy_tailed(cases).items() if zlib.crc32(case.encode()) % 7}
    shards = [matrix.shard_cases(cases, recorded, index, count) for index in range(1, count + 1)]
    flat = [case for shard in shards for case in shard]
    assert len(flat) == len(set(flat)) == len(cases)
    assert set(flat) == set(cases)
    assert all(shards)
    # The same inputs in another order give the same shards.
    again = matrix.shard_cases(list(reversed(cases)), dict(reversed(recorded.items())), 2, count)
    assert again == shards[1]


@pytest.mark.parametrize("count", [4, 8, 16])
def test_lpt_beats_contiguous_slicing(cases: list[str], count: int) -> None:
    durations = heavy_tailed(cases, seed=count)
    mean = sum(durations.values()) / count

    def worst(shards: list[list[str]]) -> float:
        return max(sum(durations[c] for c in shard) for shard in shards) / mean

    lpt, plain = worst(matrix.balance(durations, count)), worst(matrix.contiguous(cases, count))
    assert lpt < plain
    assert lpt <= 1.10


def test_contiguous_slices_by_count() -> None:
    assert matrix.contiguous(["e", "d", "c", "b", "a"], 2) == [["a", "b", "c"], ["d", "e"]]


@pytest.mark.parametrize(("text", "expected"), [("3/8", (3, 8)), ("1/1", (1, 1)), ("16/16", (16, 16))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/8", "9/8", "3", "3/0", "a/b", "-1/4", "3/8/2", ""])
def test_parse_shard_rejects_bad_input(text: str) -> None:
    with pytest.raises(SelectionError, match="bad shard"):
        parse_shard(text)


def test_shard_cases_rejects_an_index_out_of_range() -> None:
    with pytest.raises(matrix.MatrixError, match="bad shard 5/4"):
        matrix.shard_cases(["a/Model"], {}, 5, 4)


# -- devices.toml ------------------------------------------------------------------------------


def test_the_shipped_devices_config_loads() -> None:
    config = matrix.load_devices_config(CONFIG)
    assert set(config.devices) >= {"cpu", "cuda", "mps"}
    assert config.devices["cpu"].runs_on == ("ubuntu-latest",)
    assert "self-hosted" in config.devices["cuda"].runs_on
    assert "self-hosted" in config.devices["mps"].runs_on
    assert config.max_jobs <= matrix.GITHUB_MAX_JOBS
    assert "cannot use MPS" in CONFIG.read_text() or "without GPU access" in CONFIG.read_text()


GOOD_CPU = '[devices.cpu]\nruns-on = "ubuntu-latest"\nshards = 4\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_CPU + "colour = 1\n", r"devices\.cpu\.colour: unknown key"),
        ('[devices.gpu]\nruns-on = "x"\nshards = 1\n', r"devices\.gpu: unknown key"),
        ('[devices.cpu]\nruns-on = "x"\nshards = 0\n', r"devices\.cpu\.shards: expected a positive integer"),
        (
            '[devices.cpu]\nruns-on = "x"\nshards = true\n',
            r"devices\.cpu\.shards: expected a positive integer",
        ),
        ('[devices.cpu]\nruns-on = "x"\nshards = 300\n', r"devices\.cpu\.shards: at most 256"),
        ("[devices.cpu]\nruns-on = []\nshards = 2\n", r"devices\.cpu\.runs-on: expected"),
        ("[devices.cpu]\nshards = 2\n", r"devices\.cpu\.runs-on: expected"),
        ('[devices.cpu]\nruns-on = "x"\n', "set exactly one of shards and target-minutes"),
        ('[devices.cpu]\nruns-on = "x"\nshards = 2\ntarget-minutes = 5\n', "set exactly one"),
        ('[devices.cpu]\nruns-on = "x"\ntarget-minutes = "5"\n', r"devices\.cpu\.target-minutes: expected"),
        ('[devices.cpu]\nruns-on = "x"\nshards = 2\nenabled = "yes"\n', r"devices\.cpu\.enabled: expected"),
        (GOOD_CPU + "[matrix]\nmax-parallel = 0\n", r"matrix\.max-parallel: expected a positive integer"),
        (GOOD_CPU + "[matrix]\nmax-jobs = 1000\n", r"matrix\.max-jobs: at most 256"),
        (GOOD_CPU + "[matrix]\nslice = 2\n", r"matrix\.slice: unknown key"),
        (GOOD_CPU + "[runners]\n", r"\.runners: unknown key"),
        ("[matrix]\nslices = 1\n", "configure at least one device"),
        ("[devices.cpu\n", "not valid TOML"),
    ],
)
def test_a_bad_devices_config_is_an_error_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(matrix.MatrixError, match=message):
        matrix.load_devices_config(write_config(tmp_path, text))


def test_a_missing_devices_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(matrix.MatrixError, match="cannot read the devices config"):
        matrix.load_devices_config(tmp_path / "nope.toml")


# -- plans -------------------------------------------------------------------------------------


def test_target_minutes_sets_the_shard_count(tmp_path: Path) -> None:
    config = matrix.load_devices_config(
        write_config(tmp_path, '[devices.cpu]\nruns-on = "x"\ntarget-minutes = 1\nmax-shards = 5\n')
    )
    cpu = config.devices["cpu"]
    assert matrix.shard_count(cpu, {f"c{i}": 30.0 for i in range(6)}) == 3  # 3 minutes / 1 minute
    assert matrix.shard_count(cpu, {f"c{i}": 60.0 for i in range(100)}) == 5  # capped by max-shards
    assert matrix.shard_count(cpu, {"only": 600.0}) == 1  # never more jobs than cases


def test_a_plan_runs_every_case_once_per_device_and_jobs_rebuild_their_shard(
    tmp_path: Path, cases: list[str]
) -> None:
    config = matrix.load_devices_config(CONFIG)
    durations = {(case, "cpu"): s for case, s in heavy_tailed(cases).items()}
    matrix.write_durations(durations, tmp_path / "durations.json")
    matrices = matrix.plan(
        cases, config, durations, devices=["cpu", "cuda"], selection=["--tier", "critical"]
    )
    jobs = [job for m in matrices for job in m["include"]]
    assert {job["device"] for job in jobs} == {"cpu", "cuda"}
    for device in ("cpu", "cuda"):
        ran: list[str] = []
        for job in (j for j in jobs if j["device"] == device):
            argv = shlex.split(job["command"])
            assert argv[:5] == ["nox", "-s", "models", "--", "--device"]
            assert argv[argv.index("--device") + 1] == device
            assert argv[-2:] == ["--tier", "critical"]
            index, count = parse_shard(argv[argv.index("--shard") + 1])
            assert (index, count) == (job["shard"], job["shards"])
            # What the job itself computes from the durations file the plan wrote.
            mine = matrix.shard_for_device(cases, device, index, count, tmp_path / "durations.json")
            assert len(mine) == job["cases"]
            ran += mine
        assert sorted(ran) == cases


def test_the_256_job_limit_splits_into_slices_or_fails_never_drops(tmp_path: Path, cases: list[str]) -> None:
    text = (
        '[devices.cpu]\nruns-on = "a"\nshards = 200\n'
        '[devices.cuda]\nruns-on = "b"\nshards = 150\n'
        '[devices.mps]\nruns-on = "c"\nshards = 100\n'
    )
    two = matrix.load_devices_config(write_config(tmp_path, text + "[matrix]\nslices = 2\n"))
    matrices = matrix.plan(cases, two, {})
    assert len(matrices) == 2
    assert all(len(m["include"]) <= 256 for m in matrices)
    assert sum(len(m["include"]) for m in matrices) == 450
    keys = {(j["device"], j["shard"]) for m in matrices for j in m["include"]}
    assert len(keys) == 450

    one = matrix.load_devices_config(write_config(tmp_path, text + "[matrix]\nslices = 1\n"))
    with pytest.raises(matrix.MatrixError, match=r"the plan has 450 jobs, but a matrix holds at most 256"):
        matrix.plan(cases, one, {})
    assert len(matrix.plan(cases, one, {}, devices=["cpu"])[0]["include"]) == 200

    small = matrix.load_devices_config(
        write_config(tmp_path, text + "[matrix]\nmax-jobs = 100\nslices = 5\n")
    )
    assert [len(m["include"]) for m in matrix.plan(cases, small, {})] == [100, 100, 100, 100, 50]


def test_an_empty_selection_plans_empty_matrices(tmp_path: Path) -> None:
    config = matrix.load_devices_config(CONFIG)
    assert matrix.plan([], config, {}) == [{"include": []}] * config.slices


def test_an_unconfigured_device_is_a_clear_error() -> None:
    config = matrix.load_devices_config(CONFIG)
    with pytest.raises(
        matrix.MatrixError, match=r"device 'tpu' has no entry in .*; configured: cpu, cuda, mps"
    ):
        matrix.select_devices(config, ["tpu"])
    assert [d.name for d in matrix.select_devices(config)] == [
        d for d, c in config.devices.items() if c.enabled
    ]


# -- the command -------------------------------------------------------------------------------

# Runs `hfci matrix` in a fresh interpreter where importing torch fails, as on the plan runner.
NO_TORCH = """
import sys, importlib.abc
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked for this test")
sys.meta_path.insert(0, NoTorch())
from hfci.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(code)
"""


def run_matrix(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, "matrix", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean | (env or {}),
        timeout=60,
    )


def test_hfci_matrix_runs_without_torch(tmp_path: Path) -> None:
    # How fast it runs is ci/bench_catalog.py's business: a timed assertion here fails on a busy machine.
    done = run_matrix("--config", str(CONFIG), "--out", str(tmp_path), "--tier", "critical")
    assert done.returncode == 0, done.stderr
    first = json.loads((tmp_path / "matrix-1.json").read_text(), parse_constant=pytest.fail)
    assert first["include"]
    assert all("--tier critical" in job["command"] for job in first["include"])
    assert json.loads((tmp_path / "durations.json").read_text())["schema"] == "hfci-durations/1"
    # Outside Actions the outputs are printed, not written.
    assert "matrix-1={" in done.stdout
    assert "jobs-1=" in done.stdout


def test_hfci_matrix_writes_github_outputs_inside_actions(tmp_path: Path) -> None:
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    done = run_matrix("--config", str(CONFIG), "--out", str(tmp_path / "m"), "--model", "bert", env=env)
    assert done.returncode == 0, done.stderr
    text = output.read_text()
    for name in ("matrix-1", "matrix-2", "jobs-1", "jobs-2", "jobs", "max-parallel"):
        assert f"{name}<<" in text
    assert "### hfci matrix" in summary.read_text()
    assert "matrix-1={" not in done.stdout


def test_hfci_matrix_reads_results_for_durations(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    write_results(results / "results-cpu.json", "cpu", [("bert/Model", "forward", 120.0)])
    out = tmp_path / "out"
    assert (
        main(
            [
                "matrix",
                "--config",
                str(CONFIG),
                "--out",
                str(out),
                "--model",
                "bert",
                "--durations",
                str(results),
            ]
        )
        == 0
    )
    jobs = json.loads((out / "matrix-1.json").read_text())["include"]
    # One recorded case: it is also the median that every other bert case is estimated at.
    assert sum(j["estimated_seconds"] for j in jobs) == 120.0 * sum(j["cases"] for j in jobs)
    # The next plan without --durations reuses what this one wrote.
    assert matrix.read_durations([out / "durations.json"]) == {("bert/Model", "cpu"): 120.0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "device 'tpu' has no entry"),
        (["--tier", "urgent"], "unknown tier 'urgent'"),
        (["--durations", "no/such/file.json"], "no such results file"),
        (["--config", "no/such.toml"], "cannot read the devices config"),
    ],
)
def test_hfci_matrix_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_matrix(
        "--out", str(tmp_path), *(["--config", str(CONFIG)] if "--config" not in args else []), *args
    )
    assert done.returncode == 2
    assert done.stderr.startswith("hfci: error: ")
    assert message in done.stderr


# -- hardware: durations kept per machine, scaled to the jobs' ---------------------------------


def write_fingerprinted(path: Path, fingerprint: str, records: list[tuple[str, float]]) -> Path:
    write_results(path, "cpu", [(case, "forward", seconds) for case, seconds in records])
    payload = json.loads(path.read_text())
    path.write_text(json.dumps(payload | {"fingerprint": fingerprint}), encoding="utf-8")
    return path


def test_durations_files_record_their_hardware_and_old_flat_files_still_read(tmp_path: Path) -> None:
    durations = {("bert/Model", "cpu"): 0.35, ("bert/Model", "cuda"): 0.05}
    path = matrix.write_durations(durations, tmp_path / "d.json", {"cpu": "cpu-a", "cuda": "cuda-b"})
    payload = json.loads(path.read_text())
    assert payload["schema"] == "hfci-durations/2"
    assert payload["durations"]["cpu"] == {"hardware": "cpu-a", "cases": {"bert/Model": 0.35}}
    assert matrix.read_durations([path]) == durations
    assert matrix.read_recorded([path]) == {
        "cpu": {"cpu-a": {"bert/Model": 0.35}},
        "cuda": {"cuda-b": {"bert/Model": 0.05}},
    }
    # No hardware known (a refresh that mixes machines): the flat format, which older hfci reads.
    flat = matrix.write_durations(durations, tmp_path / "flat.json")
    assert json.loads(flat.read_text())["schema"] == "hfci-durations/1"
    assert matrix.read_recorded([flat]) == {
        "cpu": {"": {"bert/Model": 0.35}},
        "cuda": {"": {"bert/Model": 0.05}},
    }


def test_results_files_are_keyed_by_the_hardware_of_their_fingerprint(tmp_path: Path) -> None:
    path = write_fingerprinted(
        tmp_path / "results-cpu.json",
        "cpu-amd-epyc-f26m2-avx512-torch2.13.0-transformers5.23.0",
        [("a/M", 1.0)],
    )
    assert matrix.read_recorded([path]) == {"cpu": {"cpu-amd-epyc-f26m2-avx512": {"a/M": 1.0}}}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"schema": "hfci-durations/2", "durations": {"cpu": {"a/M": 1.0}}}, r"durations\.cpu: expected"),
        ({"schema": "hfci-durations/2", "durations": {"cpu": {"hardware": 3, "cases": {}}}}, "hardware"),
        ({"schema": "hfci-durations/1", "durations": {"cpu": {"a/M": "slow"}}}, r"cpu\.a/M.*'slow'"),
        ({"schema": "hfci-durations/1", "durations": {"cpu": {"a/M": -1}}}, "-1"),
        ({"schema": "hfci-durations/1", "durations": ["cpu"]}, "without a 'durations' table"),
    ],
)
def test_corrupt_durations_files_are_one_error_naming_the_value(
    tmp_path: Path, payload: dict, message: str
) -> None:
    path = tmp_path / "durations.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(matrix.MatrixError, match=message):
        matrix.read_durations([path])


def test_speed_ratio_is_the_ratio_of_totals_over_shared_cases() -> None:
    base = {"small": 1.0, "big": 9.0, "only-base": 100.0}
    target = {"small": 1.0, "big": 3.0, "only-target": 7.0}
    # Totals: 4 / 10. The median case's ratio (1.0) would say the big cases did not change.
    assert matrix.speed_ratio(base, target) == pytest.approx(0.4)
    assert matrix.speed_ratio(base, {"other": 1.0}) is None
    assert matrix.speed_ratio({"a": 0.0}, {"a": 1.0}) is None


def test_for_hardware_keeps_the_targets_own_and_scales_the_rest() -> None:
    recorded = {
        "cpu-old": {"a": 2.0, "b": 4.0, "c": 10.0},
        "cpu-new": {"a": 1.0, "b": 2.0},
        "cpu-alien": {"z": 5.0},
    }
    seconds, notes = matrix.for_hardware(recorded, "cpu-new", "cpu")
    assert seconds == {"a": 1.0, "b": 2.0, "c": 5.0}  # c: 10 s on old hardware, x0.5
    by_source = {note.source: note for note in notes}
    assert (by_source["cpu-old"].ratio, by_source["cpu-old"].shared, by_source["cpu-old"].used) == (0.5, 2, 1)
    assert "x0.500" in by_source["cpu-old"].describe()
    # Nothing in common: no ratio, so its cases are estimated instead of mixed in unscaled.
    assert by_source["cpu-alien"].ratio is None and "not used" in by_source["cpu-alien"].describe()
    with pytest.raises(matrix.MatrixError, match=r"unknown hardware 'cpu-typo' for device 'cpu'.*'cpu-old'"):
        matrix.for_hardware(recorded, "cpu-typo", "cpu")


def test_durations_on_defaults_to_the_freshest_hardware() -> None:
    recorded = {"cpu": {"cpu-old": {"a": 2.0, "b": 8.0}, "cpu-new": {"a": 1.0}}}
    durations, hardware, _ = matrix.durations_on(recorded)
    assert hardware == {"cpu": "cpu-new"}
    assert durations == {("a", "cpu"): 1.0, ("b", "cpu"): 4.0}
    durations, hardware, notes = matrix.durations_on(recorded, {"cpu": "cpu-old"})
    assert durations == {("a", "cpu"): 2.0, ("b", "cpu"): 8.0}
    assert [(n.source, n.ratio) for n in notes] == [("cpu-new", 2.0)]


def test_a_scaled_plan_estimates_shards_on_the_jobs_hardware_and_jobs_agree(tmp_path: Path) -> None:
    # A full set of durations from a slow machine, and a small run on the runners' hardware.
    old = tmp_path / "old.json"
    slow = {f"bert/{head}": 10.0 for head in ("Model", "ForMaskedLM", "ForPreTraining")}
    matrix.write_durations({(c, "cpu"): s for c, s in slow.items()}, old, {"cpu": "cpu-slow"})
    fast = write_fingerprinted(tmp_path / "results-cpu.json", "cpu-fast-torch2", [("bert/Model", 2.5)])
    out = tmp_path / "out"
    argv = ["matrix", "--config", str(CONFIG), "--out", str(out), "--model", "bert"]
    assert main([*argv, "--durations", str(old), str(fast), "--hardware", "cpu-fast"]) == 0
    jobs = json.loads((out / "matrix-1.json").read_text())["include"]
    written = matrix.read_recorded([out / "durations.json"])
    assert list(written["cpu"]) == ["cpu-fast"]
    assert written["cpu"]["cpu-fast"]["bert/ForMaskedLM"] == 2.5  # 10 s x (2.5 / 10)
    seconds = matrix.with_estimates(
        Selection(model=("bert",)).case_ids(load_catalog()), written["cpu"]["cpu-fast"]
    )
    assert sum(j["estimated_seconds"] for j in jobs) == pytest.approx(sum(seconds.values()), abs=0.1)
    for job in jobs:
        mine = matrix.shard_for_device(seconds, "cpu", job["shard"], job["shards"], out / "durations.json")
        assert len(mine) == job["cases"]


def test_an_unknown_hardware_is_an_error_and_nothing_is_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    durations = matrix.write_durations({("bert/Model", "cpu"): 1.0}, out / "durations.json", {"cpu": "cpu-a"})
    before = durations.read_text()
    argv = ["--config", str(CONFIG), "--out", str(out), "--model", "bert"]
    done = run_matrix(*argv, "--hardware", "cpu-b")
    assert done.returncode == 2
    assert "unknown hardware 'cpu-b'" in done.stderr and "'cpu-a'" in done.stderr
    assert durations.read_text() == before
    assert not list(out.glob("matrix-*.json"))
    done = run_matrix(*argv, "--hardware", "tpu-x")
    assert done.returncode == 2 and "--hardware 'tpu-x'" in done.stderr


def test_devices_toml_names_the_hardware_of_its_runners(tmp_path: Path) -> None:
    text = '[devices.cpu]\nruns-on = "x"\nshards = 2\nhardware = "cpu-amd-epyc-f26m2-avx512"\n'
    config = matrix.load_devices_config(write_config(tmp_path, text))
    assert matrix.hardware_targets(config) == {"cpu": "cpu-amd-epyc-f26m2-avx512"}
    assert matrix.hardware_targets(config, ["cpu-other"]) == {"cpu": "cpu-other"}  # the command line wins
    bad = write_config(tmp_path, text.replace('"cpu-amd', '"cuda-amd'))
    with pytest.raises(matrix.MatrixError, match=r"devices\.cpu\.hardware: 'cuda-amd.*' is not cpu hardware"):
        matrix.load_devices_config(bad)


# -- one case bigger than a shard's share ------------------------------------------------------


def oversized_config(tmp_path: Path) -> matrix.MatrixConfig:
    return matrix.load_devices_config(
        write_config(tmp_path, '[devices.cpu]\nruns-on = "x"\ntarget-minutes = 3\nmax-shards = 32\n')
    )


def test_a_case_over_the_target_paces_the_count_instead_of_adding_useless_shards(tmp_path: Path) -> None:
    config = oversized_config(tmp_path)
    # 10 min of one case and 10 min of small ones: a 3-minute target would ask for 7 shards, but
    # the run lasts 10 min whatever; 2 shards of 10 min each finish as soon.
    seconds = {"falcon_h1/ForCausalLM": 600.0} | {f"small{i:02d}/Model": 30.0 for i in range(20)}
    durations = {(case, "cpu"): s for case, s in seconds.items()}
    [plan] = matrix.device_plans(list(seconds), config, durations)
    assert len(plan.shards) == 2
    assert plan.shards[0] == ["falcon_h1/ForCausalLM"]
    assert plan.oversized and plan.largest == ("falcon_h1/ForCausalLM", 600.0)
    assert plan.imbalance == pytest.approx(1.0)
    [note] = matrix.plan_notes([plan])
    assert "falcon_h1/ForCausalLM alone is estimated at 10.0 min, over target-minutes = 3" in note
    jobs = matrix.plan_jobs(list(seconds), config, durations)
    summary = matrix.summary_markdown([{"include": jobs}], len(seconds), [note])
    assert "| longest / mean job |" in summary
    assert "| cpu | x | 2 | 20.0 | 10.0 | 1.00 |" in summary
    assert summary.endswith(f"- {note}")


def test_without_an_oversized_case_the_target_sets_the_count_and_nothing_is_noted(tmp_path: Path) -> None:
    config = oversized_config(tmp_path)
    seconds = {f"c{i:02d}/Model": 30.0 for i in range(60)}  # 30 min of 30 s cases
    [plan] = matrix.device_plans(list(seconds), config, {(c, "cpu"): s for c, s in seconds.items()})
    assert len(plan.shards) == 10
    assert not plan.oversized and matrix.plan_notes([plan]) == []


def test_a_fixed_shard_count_is_kept_even_under_an_oversized_case(tmp_path: Path) -> None:
    config = matrix.load_devices_config(write_config(tmp_path, '[devices.cpu]\nruns-on = "x"\nshards = 4\n'))
    assert matrix.shard_count(config.devices["cpu"], {"big": 600.0, "a": 1.0, "b": 1.0, "c": 1.0}) == 4


# -- the transformers axis ---------------------------------------------------------------------

AXIS = '[devices.cpu]\nruns-on = "x"\nshards = 3\n[devices.cuda]\nruns-on = "g"\nshards = 2\n'


def test_without_an_axis_a_plan_is_what_it_was(tmp_path: Path, cases: list[str]) -> None:
    config = matrix.load_devices_config(write_config(tmp_path, AXIS))
    jobs = matrix.plan_jobs(cases, config, {})
    assert [job["name"] for job in jobs] == ["cpu 1/3", "cpu 2/3", "cpu 3/3", "cuda 1/2", "cuda 2/2"]
    assert all(job["transformers"] == job["transformers-spec"] == "" for job in jobs)
    assert jobs[0]["artifact"] == "results-cpu-1-of-3"
    summary = matrix.summary_markdown([{"include": jobs}], len(cases))
    assert "transformers" not in summary
    assert matrix.release_notes(config, list(config.devices.values()), [], "5.23.0") == []


def test_each_release_runs_every_case_once_per_device_with_its_own_spec_and_artifacts(
    tmp_path: Path, cases: list[str]
) -> None:
    config = matrix.load_devices_config(write_config(tmp_path, AXIS))
    durations = {(case, "cpu"): s for case, s in heavy_tailed(cases).items()}
    matrix.write_durations(durations, tmp_path / "durations.json")
    jobs = matrix.plan_jobs(
        cases, config, durations, releases=["5.23.0", "5.24.0"], runners=["eager", "sdpa"]
    )
    # devices x releases x runners x shards, in that order.
    assert len(jobs) == (3 + 2) * 2 * 2
    assert [job["name"] for job in jobs[:7]] == [
        "cpu transformers 5.23.0 1/3",
        "cpu transformers 5.23.0 2/3",
        "cpu transformers 5.23.0 3/3",
        "cpu sdpa transformers 5.23.0 1/3",
        "cpu sdpa transformers 5.23.0 2/3",
        "cpu sdpa transformers 5.23.0 3/3",
        "cpu transformers 5.24.0 1/3",
    ]
    assert len({job["artifact"] for job in jobs}) == len(jobs)  # two releases' shards never collide
    assert jobs[0]["artifact"] == "results-cpu-transformers-5.23.0-1-of-3"
    assert jobs[3]["artifact"] == "results-cpu-sdpa-transformers-5.23.0-1-of-3"
    for job in jobs:
        assert job["transformers-spec"] == f"transformers=={job['transformers']}"
        assert job["transformers"] in job["name"] and job["transformers"] in job["artifact"]
    for device in ("cpu", "cuda"):
        for release in ("5.23.0", "5.24.0"):
            mine = [
                j for j in jobs if (j["device"], j["transformers"], j["runner"]) == (device, release, "eager")
            ]
            ran = [
                case
                for job in mine
                for case in matrix.shard_for_device(
                    cases, device, job["shard"], job["shards"], tmp_path / "durations.json"
                )
            ]
            assert sorted(ran) == cases
            assert sum(job["cases"] for job in mine) == len(cases)
    summary = matrix.summary_markdown([{"include": jobs}], len(cases))
    assert "| device | transformers | runs-on |" in summary
    assert "| cpu | 5.23.0 | x | 6 |" in summary and "| cuda | 5.24.0 | g | 4 |" in summary


def test_devices_toml_names_releases_for_the_matrix_and_per_device(tmp_path: Path, cases: list[str]) -> None:
    text = (
        '[matrix]\ntransformers = ["5.23.0", "5.24.0", "5.23.0"]\n'
        + AXIS
        + '[devices.mps]\nruns-on = "m"\nshards = 1\ntransformers = ["5.25.0rc1"]\n'
    )
    config = matrix.load_devices_config(write_config(tmp_path, text))
    assert config.transformers == ("5.23.0", "5.24.0")  # a repeat is planned once
    assert config.devices["mps"].transformers == ("5.25.0rc1",)
    jobs = matrix.plan_jobs(cases, config, {})
    axis = {(job["device"], job["transformers"]) for job in jobs}
    assert axis == {
        ("cpu", "5.23.0"),
        ("cpu", "5.24.0"),
        ("cuda", "5.23.0"),
        ("cuda", "5.24.0"),
        ("mps", "5.25.0rc1"),
    }
    # --transformers replaces both, for every device planned.
    jobs = matrix.plan_jobs(cases, config, {}, releases=["5.22.2"])
    assert {job["transformers"] for job in jobs} == {"5.22.2"} and len(jobs) == 3 + 2 + 1
    notes = matrix.release_notes(config, list(config.devices.values()), [], "5.23.0")
    assert notes[:3] == [
        "cpu: transformers 5.23.0, 5.24.0",
        "cuda: transformers 5.23.0, 5.24.0",
        "mps: transformers 5.25.0rc1",
    ]
    assert "a release no run recorded reuses the others'" in notes[3]
    assert "the jobs of 5.24.0, 5.25.0rc1 shard that release's own cases" in notes[4]


def test_a_device_without_releases_runs_the_pin_beside_one_with_them(
    tmp_path: Path, cases: list[str]
) -> None:
    text = AXIS.replace("shards = 3\n", 'shards = 3\ntransformers = ["5.24.0"]\n')
    config = matrix.load_devices_config(write_config(tmp_path, text))
    jobs = matrix.plan_jobs(cases, config, {})
    assert [(job["name"], job["transformers-spec"]) for job in jobs] == [
        ("cpu transformers 5.24.0 1/3", "transformers==5.24.0"),
        ("cpu transformers 5.24.0 2/3", "transformers==5.24.0"),
        ("cpu transformers 5.24.0 3/3", "transformers==5.24.0"),
        ("cuda 1/2", ""),
        ("cuda 2/2", ""),
    ]
    summary = matrix.summary_markdown([{"include": jobs}], len(cases))
    assert "| cpu | 5.24.0 | x | 3 |" in summary and "| cuda | pinned | g | 2 |" in summary
    notes = matrix.release_notes(config, list(config.devices.values()), [], "5.23.0")
    assert notes[:2] == ["cpu: transformers 5.24.0", "cuda: the pinned transformers (no axis)"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[matrix]\ntransformers = "5.24.0"\n',
            r"matrix\.transformers: expected a non-empty list of releases",
        ),
        ("[matrix]\ntransformers = []\n", r"matrix\.transformers: expected a non-empty list"),
        (
            '[matrix]\ntransformers = ["5.23.0", "latest"]\n',
            r"matrix\.transformers: 'latest' is not a transformers release; expected a version as PyPI lists it, "
            r"e\.g\. 5\.23\.0",
        ),
        ("[matrix]\ntransformers = [5.24]\n", r"matrix\.transformers: 5\.24 is not a transformers release"),
        (
            '[devices.cuda]\nruns-on = "g"\nshards = 1\ntransformers = [">=5.24"]\n',
            r"devices\.cuda\.transformers: '>=5\.24'",
        ),
    ],
)
def test_a_bad_release_in_devices_toml_is_one_error_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(matrix.MatrixError, match=message):
        matrix.load_devices_config(write_config(tmp_path, GOOD_CPU + text))


@pytest.mark.parametrize("release", ["5.24.0", "5.24", "5.25.0rc1", "5.24.0.post1", "6.0.0.dev0"])
def test_release_versions_pypi_lists_are_accepted(release: str) -> None:
    assert matrix.parse_release(release) == release


@pytest.mark.parametrize(
    "release", ["latest", "transformers==5.24.0", "v5.24.0", "5", "5.24.0+cpu", "5.24.*", ""]
)
def test_anything_but_a_release_is_refused(release: str) -> None:
    with pytest.raises(matrix.MatrixError, match="is not a transformers release"):
        matrix.parse_release(release)


def github_output(path: Path, name: str) -> str:
    """One output's value in a GITHUB_OUTPUT file (``name<<DELIMITER``, the value, ``DELIMITER``)."""
    delimiter, rest = path.read_text().split(f"{name}<<", 1)[1].split("\n", 1)
    return rest.split(f"\n{delimiter}", 1)[0]


def test_hfci_matrix_plans_the_axis_and_outputs_its_releases(tmp_path: Path) -> None:
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    argv = ["--config", str(CONFIG), "--out", str(tmp_path / "m"), "--model", "bert", "--device", "cpu"]
    done = run_matrix(*argv, "--transformers", "5.23.0", "--transformers", "5.24.0", env=env)
    assert done.returncode == 0, done.stderr
    jobs = json.loads((tmp_path / "m" / "matrix-1.json").read_text())["include"]
    assert [job["transformers"] for job in jobs] == ["5.23.0", "5.24.0"]
    assert github_output(output, "transformers") == "5.23.0 5.24.0"
    assert "| cpu | 5.24.0 | ubuntu-latest | 1 |" in summary.read_text()
    assert "a release no run recorded reuses the others'" in summary.read_text()
    # Without the axis the output is empty: the aggregate job reports one run, as before.
    done = run_matrix(*argv, env=env | {"GITHUB_OUTPUT": str(tmp_path / "plain")})
    assert done.returncode == 0, done.stderr
    assert github_output(tmp_path / "plain", "transformers") == ""


def test_a_bad_transformers_option_is_one_error_and_nothing_is_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "matrix-1.json").write_text("{}")
    done = run_matrix(
        "--config", str(CONFIG), "--out", str(out), "--transformers", "5.24.0", "--transformers", "newest"
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "hfci: error: --transformers: 'newest' is not a transformers release; expected a version as PyPI lists "
        "it, e.g. 5.23.0 or 5.25.0rc1 (not a requirement such as transformers==5.23.0)"
    ]
    assert (out / "matrix-1.json").read_text() == "{}" and not (out / "durations.json").exists()


# -- out-of-sample balance (ci/bench_suite.py) -------------------------------------------------


def test_imbalance_is_the_longest_shard_over_the_mean() -> None:
    assert matrix.imbalance([3.0, 1.0]) == 1.5
    assert matrix.imbalance([2.0, 2.0]) == 1.0
    assert matrix.imbalance([0.0, 0.0]) == 1.0
    assert matrix.shard_loads([["a", "b"], ["c"]], {"a": 1.0, "b": 2.0, "c": 4.0}) == [3.0, 4.0]


def test_replay_plans_from_one_run_and_sums_another() -> None:
    plan_from = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0, "gone": 50.0}
    measured = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 6.0, "new": 2.0}
    result = matrix.replay(plan_from, measured, 2)
    # LPT on plan_from, "new" at its median (3 s): [a, c, d] = 7, [b, new] = 6; "gone" did not run.
    assert result.estimated == [7.0, 6.0]
    assert result.measured == [9.0, 5.0]
    assert result.planned_imbalance == pytest.approx(7.0 / 6.5)
    assert result.measured_imbalance == pytest.approx(9.0 / 7.0)
    assert result.worst_estimate == pytest.approx(2.0 / 9.0)  # shard 1: 7 s believed, 9 s taken
    # In sample, the plan is exactly right.
    assert matrix.replay(measured, measured, 2).worst_estimate == 0.0


def _bench_suite():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "ci" / "bench_suite.py"
    spec = importlib.util.spec_from_file_location("bench_suite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_suite_benchmark_splits_cpu_use_at_the_measurement_windows() -> None:
    tick = os.sysconf("SC_CLK_TCK")
    # One second per sample: 2 cores busy, then 1 (a measurement from 1.0 to 2.0), then 2 again,
    # and a window cutting the last interval in half, at 1 core.
    samples = [(0.0, 0), (1.0, 2 * tick), (2.0, 3 * tick), (3.0, 5 * tick), (4.0, 6.5 * tick)]
    split = _bench_suite().cpu_outside(samples, [(1.0, 2.0), (3.5, 4.0)])
    assert split["measuring_s"] == pytest.approx(1.5)
    assert split["outside_s"] == pytest.approx(2.5)
    assert split["measuring_cpu"] == pytest.approx((100 + 0.5 * 150) / 1.5)
    assert split["outside_cpu"] == pytest.approx((200 + 200 + 0.5 * 150) / 2.5)
