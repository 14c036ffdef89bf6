"""Matrix: cases x devices -> shards balanced on recorded durations -> GitHub Actions matrices.

Plain functions, one idea each. The planner runs on a runner without torch (``hfci matrix``);
the same ``shard_cases`` runs inside every job (``hfci run --shard 3/8``), so everything that
decides which case lands in which shard is deterministic given the same cases and durations.
The durations a plan used are written next to it (``matrices/durations.json``) for the jobs to
read back.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import shlex
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfci import github, runners
from hfci.catalog import load_catalog
from hfci.data import tomllib
from hfci.devices import KNOWN_DEVICES
from hfci.errors import HfciError
from hfci.project import folder
from hfci.results import results_files, write_json_atomic
from hfci.selection import CASE_OPTIONS, MODEL_OPTIONS, Selection, add_arguments

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_DURATIONS",
    "DEFAULT_ESTIMATE",
    "DEFAULT_OUT",
    "DURATIONS_SCHEMA",
    "GITHUB_MAX_JOBS",
    "RESULTS_SCHEMA",
    "DeviceConfig",
    "MatrixConfig",
    "MatrixError",
    "add_command",
    "balance",
    "cmd_matrix",
    "contiguous",
    "default_config",
    "durations_for",
    "estimate",
    "job_command",
    "load_devices_config",
    "plan",
    "plan_jobs",
    "read_durations",
    "select_devices",
    "shard_cases",
    "shard_count",
    "shard_for_device",
    "split",
    "summary_markdown",
    "to_json",
    "with_estimates",
    "write_durations",
]

DEFAULT_CONFIG = Path("matrices/devices.toml")
DEFAULT_OUT = Path("matrices")
DEFAULT_DURATIONS = DEFAULT_OUT / "durations.json"
# What a project without a devices config of its own plans: CPU on GitHub's hosted runners.
PACKAGED_CONFIG = Path(__file__).with_name("data") / "matrix_devices.toml"
RESULTS_SCHEMA = "hfci-results/1"
DURATIONS_SCHEMA = "hfci-durations/1"
# GitHub refuses a matrix of more than 256 jobs.
GITHUB_MAX_JOBS = 256
# Seconds assumed for a case when nothing at all is recorded for its device: about the mean of a
# full CPU run (1576 cases, median 0.09 s, mean 0.41 s). A constant, not a setting: the planner
# and every job must agree on it or their shards would differ.
DEFAULT_ESTIMATE = 0.5

Durations = dict[tuple[str, str], float]


class MatrixError(HfciError):
    """A bad shard, devices config or durations file."""


# -- cases and durations -----------------------------------------------------------------------


def _load_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MatrixError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(payload, dict):
        raise MatrixError(f"{path}: expected a JSON object")
    return payload


def read_durations(paths: Iterable[str | Path]) -> Durations:
    """(case, device) -> seconds, from results files (``hfci-results/1``) or durations files.

    A case's duration is the sum of its records' (one per check). When several files hold the
    same case on the same device, the last one read wins: a re-run replaces, never adds.
    Seconds are rounded to milliseconds so that a plan and the durations file it writes agree.
    """
    durations: Durations = {}
    for path in results_files(paths):
        payload = _load_json(path)
        schema = payload.get("schema")
        found: Durations = {}
        if schema == DURATIONS_SCHEMA:
            for device, cases in payload.get("durations", {}).items():
                for case, seconds in cases.items():
                    found[case, device] = float(seconds)
        elif schema == RESULTS_SCHEMA:
            for record in payload.get("records", []):
                try:
                    key = (record["case"], record.get("device") or payload["device"])
                    found[key] = found.get(key, 0.0) + float(record.get("duration") or 0.0)
                except (KeyError, TypeError, ValueError):
                    raise MatrixError(f"{path}: malformed record {record!r}") from None
        else:
            raise MatrixError(
                f"{path}: unknown schema {schema!r}; expected {RESULTS_SCHEMA!r} or {DURATIONS_SCHEMA!r}"
            )
        durations |= {key: round(seconds, 3) for key, seconds in found.items()}
    return durations


def durations_for(durations: Mapping[tuple[str, str], float], device: str) -> dict[str, float]:
    """The recorded seconds of each case on one device."""
    return {case: seconds for (case, on), seconds in durations.items() if on == device}


def write_durations(durations: Mapping[tuple[str, str], float], path: str | Path) -> Path:
    """Write durations as a small, sorted, diff-friendly JSON file that ``read_durations`` reads."""
    by_device: dict[str, dict[str, float]] = {}
    for (case, device), seconds in durations.items():
        by_device.setdefault(device, {})[case] = seconds
    # Atomically: a refresh commits this file, and a half-written one would plan nothing.
    return write_json_atomic(Path(path), {"schema": DURATIONS_SCHEMA, "durations": by_device})


def estimate(known: Iterable[float], default: float = DEFAULT_ESTIMATE) -> float:
    """Seconds for a case no run has recorded: the median recorded case, else a default.

    The median, not the mean: a handful of huge multimodal models would otherwise make every
    unknown case look expensive.
    """
    values = list(known)
    return round(statistics.median(values), 3) if values else default


def with_estimates(cases: Iterable[str], durations: Mapping[str, float]) -> dict[str, float]:
    """Every case's seconds: recorded where there is a record, the estimate elsewhere."""
    guess = estimate(durations.values())
    return {case: durations.get(case, guess) for case in cases}


# -- sharding ----------------------------------------------------------------------------------


def balance(durations: Mapping[str, float], count: int) -> list[list[str]]:
    """Longest processing time first: each case, longest first, goes to the least-loaded shard.

    Ties break on the case id and then on the lowest shard index, so the result depends only on
    the inputs, never on dict order.
    """
    if count < 1:
        raise MatrixError(f"shard count must be at least 1, got {count}")
    shards: list[list[str]] = [[] for _ in range(count)]
    loads = [(0.0, index) for index in range(count)]
    for case in sorted(durations, key=lambda c: (-durations[c], c)):
        load, index = heapq.heappop(loads)
        shards[index].append(case)
        heapq.heappush(loads, (load + durations[case], index))
    return shards


def contiguous(cases: Iterable[str], count: int) -> list[list[str]]:
    """Plain slicing of the sorted cases into ``count`` runs of near-equal length (for comparison)."""
    ordered = sorted(cases)
    size, extra = divmod(len(ordered), count)
    bounds = [index * size + min(index, extra) for index in range(count + 1)]
    return [ordered[bounds[i] : bounds[i + 1]] for i in range(count)]


def shard_cases(cases: Iterable[str], durations: Mapping[str, float], index: int, count: int) -> list[str]:
    """The cases that job ``index`` of ``count`` runs (1-based), balanced on one device's durations."""
    if count < 1 or not 1 <= index <= count:
        raise MatrixError(f"bad shard {index}/{count}; the index must be between 1 and {max(count, 1)}")
    return balance(with_estimates(cases, durations), count)[index - 1]


def shard_for_device(
    cases: Iterable[str], device: str, index: int, count: int, durations_path: str | Path | None = None
) -> list[str]:
    """What a job runs for ``--shard index/count`` on ``device``, with the durations its plan used.

    Reads ``matrices/durations.json`` (written by ``hfci matrix``) when it exists; without it
    every case gets the same estimate, which the planner also did.
    """
    path = Path(durations_path) if durations_path else folder("matrices") / "durations.json"
    recorded = durations_for(read_durations([path]), device) if path.is_file() else {}
    return shard_cases(cases, recorded, index, count)


# -- devices.toml ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceConfig:
    """How one device's jobs run: where, and how finely its cases are split."""

    name: str
    runs_on: tuple[str, ...]
    shards: int | None = None
    target_minutes: float | None = None
    max_shards: int = 64
    enabled: bool = True
    torch_spec: str = ""
    torch_index: str = ""


@dataclass(frozen=True)
class MatrixConfig:
    """The whole of ``matrices/devices.toml``."""

    devices: dict[str, DeviceConfig]
    max_parallel: int = 20
    max_jobs: int = GITHUB_MAX_JOBS
    slices: int = 1
    path: Path = field(default=DEFAULT_CONFIG)


_MATRIX_KEYS = {"max-parallel", "max-jobs", "slices"}
_DEVICE_KEYS = {"runs-on", "shards", "target-minutes", "max-shards", "enabled", "torch-spec", "torch-index"}


def _positive_int(value: Any, where: str, limit: int | None = None) -> int:
    # bool is an int in Python; `shards = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MatrixError(f"{where}: expected a positive integer, got {value!r}")
    if limit is not None and value > limit:
        raise MatrixError(f"{where}: at most {limit}, got {value}")
    return value


def _check_keys(table: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise MatrixError(f"{where}: expected a table")
    for key in table:
        if key not in allowed:
            raise MatrixError(f"{where}.{key}: unknown key; valid: {', '.join(sorted(allowed))}")
    return table


def _device_config(name: str, table: Any, where: str) -> DeviceConfig:
    table = _check_keys(table, _DEVICE_KEYS, where)
    if name not in KNOWN_DEVICES:
        raise MatrixError(f"{where}: unknown device {name!r}; valid: {', '.join(KNOWN_DEVICES)}")
    runs_on = table.get("runs-on")
    if isinstance(runs_on, str):
        runs_on = [runs_on]
    if not isinstance(runs_on, list) or not runs_on or not all(isinstance(x, str) and x for x in runs_on):
        raise MatrixError(f"{where}.runs-on: expected a runner label or a non-empty list of labels")
    if ("shards" in table) == ("target-minutes" in table):
        raise MatrixError(f"{where}: set exactly one of shards and target-minutes")
    target = table.get("target-minutes")
    if target is not None and (
        isinstance(target, bool) or not isinstance(target, int | float) or target <= 0
    ):
        raise MatrixError(f"{where}.target-minutes: expected a positive number of minutes, got {target!r}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise MatrixError(f"{where}.enabled: expected true or false, got {enabled!r}")
    for key in ("torch-spec", "torch-index"):
        if not isinstance(table.get(key, ""), str):
            raise MatrixError(f"{where}.{key}: expected a string, got {table[key]!r}")
    return DeviceConfig(
        name=name,
        runs_on=tuple(runs_on),
        shards=_positive_int(table["shards"], f"{where}.shards", GITHUB_MAX_JOBS)
        if "shards" in table
        else None,
        target_minutes=float(target) if target is not None else None,
        max_shards=_positive_int(table.get("max-shards", 64), f"{where}.max-shards", GITHUB_MAX_JOBS),
        enabled=enabled,
        torch_spec=table.get("torch-spec", ""),
        torch_index=table.get("torch-index", ""),
    )


def default_config() -> Path:
    """The devices config ``hfci matrix`` reads when none is named: the project's
    ``<matrices>/devices.toml`` where it has one, else hfci's packaged default."""
    mine = folder("matrices") / "devices.toml"
    return mine if mine.is_file() else PACKAGED_CONFIG


def load_devices_config(path: str | Path = DEFAULT_CONFIG) -> MatrixConfig:
    """Read ``matrices/devices.toml``; any mistake is one MatrixError naming the file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MatrixError(f"cannot read the devices config {path}: {error.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise MatrixError(f"{path}: not valid TOML: {error}") from None
    _check_keys(raw, {"matrix", "devices"}, str(path))
    matrix = _check_keys(raw.get("matrix", {}), _MATRIX_KEYS, f"{path}: matrix")
    devices = _check_keys(raw.get("devices", {}), set(KNOWN_DEVICES), f"{path}: devices")
    if not devices:
        raise MatrixError(f"{path}: devices: configure at least one device, e.g. [devices.cpu]")
    return MatrixConfig(
        devices={
            name: _device_config(name, table, f"{path}: devices.{name}") for name, table in devices.items()
        },
        max_parallel=_positive_int(matrix.get("max-parallel", 20), f"{path}: matrix.max-parallel"),
        max_jobs=_positive_int(
            matrix.get("max-jobs", GITHUB_MAX_JOBS), f"{path}: matrix.max-jobs", GITHUB_MAX_JOBS
        ),
        slices=_positive_int(matrix.get("slices", 1), f"{path}: matrix.slices"),
        path=path,
    )


def select_devices(config: MatrixConfig, names: Sequence[str] = ()) -> list[DeviceConfig]:
    """The devices to plan: those named (enabled or not), else every enabled one."""
    for name in names:
        if name not in config.devices:
            raise MatrixError(
                f"device {name!r} has no entry in {config.path}; configured: {', '.join(config.devices)}"
            )
    if names:
        return [config.devices[name] for name in dict.fromkeys(names)]
    return [device for device in config.devices.values() if device.enabled]


# -- planning ----------------------------------------------------------------------------------


def shard_count(device: DeviceConfig, seconds: Mapping[str, float]) -> int:
    """How many jobs a device's cases get: the configured count, or enough to meet the target."""
    if device.shards is not None:
        wanted = device.shards
    else:
        assert device.target_minutes is not None  # load_devices_config guarantees one of the two
        wanted = math.ceil(sum(seconds.values()) / (device.target_minutes * 60))
        wanted = min(wanted, device.max_shards)
    # An empty shard is a wasted runner; never more jobs than cases.
    return max(1, min(wanted, len(seconds)))


def job_command(device: str, index: int, count: int, selection: Sequence[str] = ()) -> str:
    """The shell command one job runs: the ``models`` nox session, its device, shard and filters."""
    return shlex.join(
        ["nox", "-s", "models", "--", "--device", device, "--shard", f"{index}/{count}", *selection]
    )


def plan_jobs(
    cases: Sequence[str],
    config: MatrixConfig,
    durations: Mapping[tuple[str, str], float],
    devices: Sequence[str] = (),
    selection: Sequence[str] = (),
    runners: Sequence[str] = ("eager",),
) -> list[dict[str, Any]]:
    """One matrix entry per (device, runner, shard), in that order.

    A runner other than eager runs the parity check of every case against eager; its jobs shard
    on the same recorded durations, so plan and jobs agree on what each shard holds.
    """
    jobs: list[dict[str, Any]] = []
    if not cases:
        return jobs
    for device in select_devices(config, devices):
        seconds = with_estimates(cases, durations_for(durations, device.name))
        count = shard_count(device, seconds)
        for runner, (index, shard) in (
            (runner, item) for runner in runners for item in enumerate(balance(seconds, count), start=1)
        ):
            estimated = sum(seconds[case] for case in shard)
            flags = [] if runner == "eager" else ["--runner", runner]
            label = device.name if runner == "eager" else f"{device.name} {runner}"
            jobs.append(
                {
                    "name": f"{label} {index}/{count}",
                    "device": device.name,
                    "runner": runner,
                    "runs-on": list(device.runs_on),
                    "shard": index,
                    "shards": count,
                    "cases": len(shard),
                    "estimated_seconds": round(estimated, 1),
                    # Generous: shared runners drift, and a first run has only estimates.
                    "timeout-minutes": max(30, math.ceil(estimated * 3 / 60)),
                    "command": job_command(device.name, index, count, [*selection, *flags]),
                    "torch-spec": device.torch_spec,
                    "torch-index": device.torch_index,
                    "artifact": f"results-{label.replace(' ', '-')}-{index}-of-{count}",
                }
            )
    return jobs


def split(
    jobs: Sequence[dict[str, Any]], max_jobs: int, slices: int
) -> list[dict[str, list[dict[str, Any]]]]:
    """Exactly ``slices`` matrices of at most ``max_jobs`` jobs each, for the workflow to fan out.

    A plan that does not fit is an error that says what to change: dropping jobs would silently
    leave cases untested.
    """
    needed = math.ceil(len(jobs) / max_jobs)
    if needed > slices:
        raise MatrixError(
            f"the plan has {len(jobs)} jobs, but a matrix holds at most {max_jobs} and the workflow fans out "
            f"{slices} slice(s) ({slices * max_jobs} jobs): lower shards, max-shards or raise target-minutes "
            "in devices.toml, filter the plan, or add a slice job to the workflow and raise matrix.slices"
        )
    return [{"include": list(jobs[i * max_jobs : (i + 1) * max_jobs])} for i in range(slices)]


def plan(
    cases: Sequence[str],
    config: MatrixConfig,
    durations: Mapping[tuple[str, str], float],
    devices: Sequence[str] = (),
    selection: Sequence[str] = (),
    runners: Sequence[str] = ("eager",),
) -> list[dict[str, list[dict[str, Any]]]]:
    """The matrices (``{"include": [...]}``, one per workflow slice) that run ``cases`` on ``devices``."""
    jobs = plan_jobs(cases, config, durations, devices, selection, runners)
    return split(jobs, config.max_jobs, config.slices)


def to_json(matrix: Mapping[str, Any]) -> str:
    """Strict, compact JSON: what GitHub's fromJSON accepts (no NaN, no Infinity)."""
    return json.dumps(matrix, allow_nan=False, separators=(",", ":"))


def summary_markdown(matrices: Sequence[Mapping[str, Any]], case_count: int) -> str:
    """A job-summary table: per device, its jobs and estimated minutes."""
    jobs = [job for matrix in matrices for job in matrix["include"]]
    if not jobs:
        return f"### hfci matrix\n\nNo jobs: the selection has {case_count} cases and no device to run them."
    lines = [
        "### hfci matrix",
        "",
        f"{len(jobs)} jobs in {sum(1 for m in matrices if m['include'])} matrix slice(s), {case_count} cases.",
        "",
        "| device | runs-on | jobs | estimated minutes (total) | longest job (min) |",
        "|---|---|---:|---:|---:|",
    ]
    for device in dict.fromkeys(job["device"] for job in jobs):
        mine = [job for job in jobs if job["device"] == device]
        total = sum(job["estimated_seconds"] for job in mine) / 60
        longest = max(job["estimated_seconds"] for job in mine) / 60
        labels = ", ".join(mine[0]["runs-on"])
        lines.append(f"| {device} | {labels} | {len(mine)} | {total:.1f} | {longest:.1f} |")
    return "\n".join(lines)


# -- the command -------------------------------------------------------------------------------


def add_command(sub: Any) -> None:
    """Register ``hfci matrix`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "matrix",
        help="plan model tests as GitHub Actions matrices",
        description="Plan cases x devices as shards balanced on recorded durations; write the matrices.",
    )
    # The jobs shard the selection themselves, so --shard is the one selection option a plan lacks.
    add_arguments(parser, (*MODEL_OPTIONS, *CASE_OPTIONS))
    parser.add_argument(
        "--durations",
        nargs="+",
        default=None,
        metavar="PATH",
        help="results files or directories of them (default: OUT/durations.json if it exists)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the devices config (default: MATRICES/devices.toml, else hfci's own default)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the matrices are written (default: the project's matrices folder)",
    )
    parser.set_defaults(func=cmd_matrix)


def cmd_matrix(args: argparse.Namespace) -> int:
    """``hfci matrix``: plan the selection on every configured device, write the matrices."""
    selection = Selection.from_namespace(args)
    config = load_devices_config(args.config or default_config())
    if config.path == PACKAGED_CONFIG:
        where = folder("matrices") / "devices.toml"
        print(f"hfci matrix: no {where}: planning with hfci's default devices config", file=sys.stderr)
    args.out = args.out or folder("matrices")
    select_devices(config, selection.device)  # fail on a bad --device before the catalog is read
    cases = selection.case_ids(load_catalog())
    previous = args.out / "durations.json"
    if args.durations is not None:
        durations = read_durations(args.durations)
    else:
        durations = read_durations([previous]) if previous.is_file() else {}
    for name in selection.runner:
        if name not in runners.available():
            raise runners.RunnerError(f"unknown runner {name!r}; valid: {', '.join(runners.available())}")
    # Each job adds its own device, shard and runner to what the plan selected.
    job_selection = selection.with_values(device=(), runner=()).argv()
    matrices = plan(cases, config, durations, selection.device, job_selection, selection.runner or ["eager"])

    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("matrix-*.json"):
        stale.unlink()
    for number, matrix in enumerate(matrices, start=1):
        (args.out / f"matrix-{number}.json").write_text(to_json(matrix) + "\n", encoding="utf-8")
        github.set_output(f"matrix-{number}", to_json(matrix))
        github.set_output(f"jobs-{number}", str(len(matrix["include"])))
    # The jobs shard with these exact numbers; they must see what the plan saw.
    write_durations(durations, previous)
    total = sum(len(m["include"]) for m in matrices)
    github.set_output("jobs", str(total))
    github.set_output("max-parallel", str(config.max_parallel))
    github.append_summary(summary_markdown(matrices, len(cases)))
    print(f"hfci matrix: {total} jobs for {len(cases)} cases, written to {args.out}/matrix-*.json")
    return 0
