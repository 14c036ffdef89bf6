"""Matrix: cases x devices -> shards balanced on recorded durations -> GitHub Actions matrices.

Plain functions, one idea each. The planner runs on a runner without torch (``hfci matrix``);
the same ``shard_cases`` runs inside every job (``hfci run --shard 3/8``), so everything that
decides which case lands in which shard is deterministic given the same cases and durations.
The durations a plan used are written next to it (``matrices/durations.json``) for the jobs to
read back.

Durations are only comparable on one machine: each source's are kept apart by the hardware that
measured them (the hardware part of a results file's fingerprint), and a plan converts them to
the hardware its jobs run on (``hardware`` in devices.toml, ``--hardware``) by the ratio of
totals over the cases both have. A uniform scale moves no case between shards (LPT compares
durations only with each other); what it fixes is every shard's estimate, the job timeouts and
the count ``target-minutes`` asks for.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import re
import shlex
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfci import github, runners
from hfci.baselines import hardware_of
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
    "DURATIONS_SCHEMA_FLAT",
    "GITHUB_MAX_JOBS",
    "RESULTS_SCHEMA",
    "DeviceConfig",
    "DevicePlan",
    "MatrixConfig",
    "MatrixError",
    "Recorded",
    "Replay",
    "Scaling",
    "add_command",
    "balance",
    "cmd_matrix",
    "contiguous",
    "default_config",
    "device_plans",
    "durations_for",
    "durations_on",
    "estimate",
    "for_hardware",
    "hardware_targets",
    "imbalance",
    "job_command",
    "load_devices_config",
    "parse_release",
    "plan",
    "plan_jobs",
    "plan_notes",
    "read_durations",
    "read_recorded",
    "release_notes",
    "releases_for",
    "replay",
    "select_devices",
    "shard_cases",
    "shard_count",
    "shard_for_device",
    "shard_loads",
    "speed_ratio",
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
# /2 records the hardware each device's durations were measured on; /1 (flat: device -> case ->
# seconds) is still read, and written when no hardware is known (an older reader still reads it).
DURATIONS_SCHEMA = "hfci-durations/2"
DURATIONS_SCHEMA_FLAT = "hfci-durations/1"
# GitHub refuses a matrix of more than 256 jobs.
GITHUB_MAX_JOBS = 256
# Seconds assumed for a case when nothing at all is recorded for its device: about the mean of a
# full CPU run (1576 cases, median 0.09 s, mean 0.41 s). A constant, not a setting: the planner
# and every job must agree on it or their shards would differ.
DEFAULT_ESTIMATE = 0.5

Durations = dict[tuple[str, str], float]
# device -> hardware -> case -> seconds; hardware "" where a source did not say.
Recorded = dict[str, dict[str, dict[str, float]]]


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


def _seconds(value: Any, where: str) -> float:
    # bool is a number to float(); a duration of `true` is a corrupt file, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise MatrixError(f"{where}: expected a duration in seconds, got {value!r}")
    return float(value)


def _durations_file(path: Path, payload: dict[str, Any]) -> list[tuple[str, str, dict[str, float]]]:
    """(device, hardware, cases) of a durations file, flat (/1) or with hardware (/2)."""
    by_device = payload.get("durations")
    if not isinstance(by_device, dict):
        raise MatrixError(f"{path}: a durations file without a 'durations' table")
    found = []
    for device, entry in by_device.items():
        where = f"{path}: durations.{device}"
        if payload["schema"] == DURATIONS_SCHEMA:
            if not isinstance(entry, dict) or not isinstance(entry.get("cases"), dict):
                raise MatrixError(f"{where}: expected {{'hardware': ..., 'cases': {{...}}}}")
            hardware, cases = entry.get("hardware", ""), entry["cases"]
            if not isinstance(hardware, str):
                raise MatrixError(f"{where}.hardware: expected a string, got {hardware!r}")
        else:
            if not isinstance(entry, dict):
                raise MatrixError(f"{where}: expected a table of case -> seconds")
            hardware, cases = "", entry
        found.append((device, hardware, {c: _seconds(v, f"{where}.{c}") for c, v in cases.items()}))
    return found


def _results_file(path: Path, payload: dict[str, Any]) -> list[tuple[str, str, dict[str, float]]]:
    """(device, hardware, cases) of a results file: its checks' durations summed per case."""
    hardware = hardware_of(str(payload.get("fingerprint") or ""))
    found: dict[str, dict[str, float]] = {}
    for record in payload.get("records", []):
        try:
            device = record.get("device") or payload["device"]
            case = record["case"]
            mine = found.setdefault(device, {})
            mine[case] = mine.get(case, 0.0) + float(record.get("duration") or 0.0)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise MatrixError(f"{path}: malformed record {record!r}") from None
    return [(device, hardware, cases) for device, cases in found.items()]


def _sources(paths: Iterable[str | Path]) -> list[tuple[str, str, dict[str, float]]]:
    """(device, hardware, case -> seconds) of every file, in the order read; seconds rounded."""
    sources = []
    for path in results_files(paths):
        payload = _load_json(path)
        schema = payload.get("schema")
        if schema in (DURATIONS_SCHEMA, DURATIONS_SCHEMA_FLAT):
            found = _durations_file(path, payload)
        elif schema == RESULTS_SCHEMA:
            found = _results_file(path, payload)
        else:
            raise MatrixError(
                f"{path}: unknown schema {schema!r}; expected {RESULTS_SCHEMA!r} or {DURATIONS_SCHEMA!r}"
            )
        # Milliseconds, so that a plan and the durations file it writes agree.
        sources += [(d, hw, {c: round(v, 3) for c, v in cases.items()}) for d, hw, cases in found]
    return sources


def read_durations(paths: Iterable[str | Path]) -> Durations:
    """(case, device) -> seconds, from results files (``hfci-results/1``) or durations files.

    A case's duration is the sum of its records' (one per check). When several files hold the
    same case on the same device, the last one read wins: a re-run replaces, never adds. The
    hardware is ignored here (see :func:`read_recorded`): this is what a job that reads back its
    plan's durations file needs, and that file holds one hardware per device.
    """
    durations: Durations = {}
    for device, _, cases in _sources(paths):
        durations |= {(case, device): seconds for case, seconds in cases.items()}
    return durations


def read_recorded(paths: Iterable[str | Path]) -> Recorded:
    """device -> hardware -> case -> seconds: each machine's durations kept apart.

    Within one hardware the last file read wins, as in :func:`read_durations`. A device's
    hardware are in the order last read: its last is the freshest.
    """
    recorded: Recorded = {}
    for device, hardware, cases in _sources(paths):
        mine = recorded.setdefault(device, {})
        merged = mine.pop(hardware, {}) | cases
        mine[hardware] = merged
    return recorded


def durations_for(durations: Mapping[tuple[str, str], float], device: str) -> dict[str, float]:
    """The recorded seconds of each case on one device."""
    return {case: seconds for (case, on), seconds in durations.items() if on == device}


def write_durations(
    durations: Mapping[tuple[str, str], float],
    path: str | Path,
    hardware: Mapping[str, str] | None = None,
) -> Path:
    """Write durations as a small, sorted, diff-friendly JSON file that ``read_durations`` reads.

    ``hardware`` (device -> the hardware they were measured on, or converted to) makes it an
    ``hfci-durations/2`` file; without it the file stays flat (/1), as a caller that mixes
    machines cannot honestly name one.
    """
    by_device: dict[str, dict[str, float]] = {}
    for (case, device), seconds in durations.items():
        by_device.setdefault(device, {})[case] = seconds
    payload: dict[str, Any]
    if hardware and any(hardware.get(device) for device in by_device):
        payload = {
            "schema": DURATIONS_SCHEMA,
            "durations": {
                device: {"hardware": hardware.get(device, ""), "cases": cases}
                for device, cases in by_device.items()
            },
        }
    else:
        payload = {"schema": DURATIONS_SCHEMA_FLAT, "durations": by_device}
    # Atomically: a refresh commits this file, and a half-written one would plan nothing.
    return write_json_atomic(Path(path), payload)


# -- hardware ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """How one machine's durations were converted to the plan's: by ``ratio``, over ``shared`` cases."""

    device: str
    source: str
    target: str
    ratio: float | None
    shared: int
    used: int

    def describe(self) -> str:
        """One line for the plan's summary."""
        source = self.source or "unrecorded hardware"
        if self.ratio is None:
            return (
                f"{self.device}: {self.used} durations from {source} not used: no case in common with "
                f"{self.target} to scale them by (estimated instead)"
            )
        return (
            f"{self.device}: {self.used} durations from {source} scaled x{self.ratio:.3f} to {self.target} "
            f"(ratio of totals over {self.shared} shared cases)"
        )


def speed_ratio(base: Mapping[str, float], target: Mapping[str, float]) -> float | None:
    """How much longer the cases both have take on ``target`` than on ``base``: the ratio of totals.

    Totals, not medians: a shard's time is a sum, dominated by its few large cases, and two
    machines (or two versions of a check) need not differ by the same factor on large and small
    cases. On hfci's own runs a ratio of medians mis-estimated shards by 80-110 %, one of totals
    by 10-20 %. None when there is nothing to compare.
    """
    shared = [case for case in base if case in target]
    before = sum(base[case] for case in shared)
    if not shared or before <= 0:
        return None
    return sum(target[case] for case in shared) / before


def for_hardware(
    by_hardware: Mapping[str, Mapping[str, float]], target: str, device: str = "?"
) -> tuple[dict[str, float], list[Scaling]]:
    """One device's durations as they would be on ``target``: its own, then others' scaled.

    A case measured on ``target`` keeps that measurement; one measured only elsewhere takes the
    freshest other hardware's value times that hardware's ratio to ``target``. Hardware with no
    case in common cannot be scaled and is left out (its cases get the estimate, in ``target``'s
    units). ``target`` must be one of the recorded hardware.
    """
    if target not in by_hardware:
        known = ", ".join(repr(h) for h in by_hardware) or "none"
        raise MatrixError(
            f"unknown hardware {target!r} for device {device!r}: no durations were recorded on it "
            f"(recorded: {known}); pass a run's results on it with --durations, or plan without it"
        )
    mine = dict(by_hardware[target])
    notes = []
    # Freshest first: the last-read hardware fills a missing case before older ones.
    for source in reversed([h for h in by_hardware if h != target]):
        cases = by_hardware[source]
        ratio = speed_ratio(cases, by_hardware[target])
        missing = [case for case in cases if case not in mine]
        if ratio is not None:
            mine |= {case: round(cases[case] * ratio, 3) for case in missing}
        shared = sum(1 for case in cases if case in by_hardware[target])
        notes.append(Scaling(device, source, target, ratio, shared, len(missing)))
    return mine, notes


def durations_on(
    recorded: Recorded, targets: Mapping[str, str] | None = None
) -> tuple[Durations, dict[str, str], list[Scaling]]:
    """Every device's durations on one hardware: the target named for it, else its freshest.

    Returns the durations, the hardware of each device's, and how they were converted.
    """
    targets = targets or {}
    durations: Durations = {}
    hardware: dict[str, str] = {}
    notes: list[Scaling] = []
    for device, by_hardware in recorded.items():
        target = targets.get(device) or list(by_hardware)[-1]
        cases, scaled = for_hardware(by_hardware, target, device)
        durations |= {(case, device): seconds for case, seconds in cases.items()}
        hardware[device] = target
        notes += scaled
    return durations, hardware, notes


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


def shard_loads(shards: Sequence[Sequence[str]], seconds: Mapping[str, float]) -> list[float]:
    """Each shard's seconds: the sum of its cases'."""
    return [sum(seconds[case] for case in shard) for shard in shards]


def imbalance(loads: Sequence[float]) -> float:
    """The longest shard over the mean shard: 1.0 is perfect, and a sharded run lasts its longest."""
    mean = sum(loads) / len(loads) if loads else 0.0
    return max(loads) / mean if mean > 0 else 1.0


@dataclass(frozen=True)
class Replay:
    """A plan made from one run's durations, summed with another run's real ones."""

    count: int
    estimated: list[float]
    measured: list[float]

    @property
    def planned_imbalance(self) -> float:
        """The max/mean the plan believed."""
        return imbalance(self.estimated)

    @property
    def measured_imbalance(self) -> float:
        """The max/mean the shards really had."""
        return imbalance(self.measured)

    @property
    def worst_estimate(self) -> float:
        """The largest relative error of a shard's estimate (0.25: a shard 25 % off)."""
        return max(
            (abs(e - m) / m for e, m in zip(self.estimated, self.measured, strict=True) if m > 0), default=0.0
        )


def replay(plan_from: Mapping[str, float], measured: Mapping[str, float], count: int) -> Replay:
    """Out of sample: shard ``measured``'s cases as a plan from ``plan_from`` would, then sum each
    shard's real seconds from ``measured``.

    Exactly what a job does: cases ``plan_from`` lacks get its estimate. Cases only ``plan_from``
    has did not run, and are left out.
    """
    seconds = with_estimates(measured, plan_from)
    shards = balance(seconds, count)
    return Replay(count, shard_loads(shards, seconds), shard_loads(shards, measured))


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


# -- transformers releases ---------------------------------------------------------------------

# A release as PyPI lists it (PEP 440's public versions, without epochs): 5.23.0, 5.25.0rc1.
# Not a requirement: the job's spec is built from it (transformers==X), so "==5.23" or ">=5"
# would make a spec pip reads otherwise than the job name says.
_RELEASE = re.compile(r"\d+(?:\.\d+){1,3}(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?")


def parse_release(value: Any, where: str = "--transformers") -> str:
    """A transformers release of the matrix's axis, checked; anything else is one clear error."""
    if not isinstance(value, str) or not _RELEASE.fullmatch(value):
        raise MatrixError(
            f"{where}: {value!r} is not a transformers release; expected a version as PyPI lists it, "
            "e.g. 5.23.0 or 5.25.0rc1 (not a requirement such as transformers==5.23.0)"
        )
    return value


def _releases(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise MatrixError(f'{where}: expected a non-empty list of releases, e.g. ["5.23.0", "5.24.0"]')
    return tuple(dict.fromkeys(parse_release(v, where) for v in value))


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
    hardware: str = ""
    # The transformers releases its jobs run; empty: the matrix's, else the noxfile's pin.
    transformers: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatrixConfig:
    """The whole of ``matrices/devices.toml``."""

    devices: dict[str, DeviceConfig]
    max_parallel: int = 20
    max_jobs: int = GITHUB_MAX_JOBS
    slices: int = 1
    path: Path = field(default=DEFAULT_CONFIG)
    # The transformers axis: every device's jobs run once per release. Empty: no axis.
    transformers: tuple[str, ...] = ()


_MATRIX_KEYS = {"max-parallel", "max-jobs", "slices", "transformers"}
_DEVICE_KEYS = {
    "runs-on",
    "shards",
    "target-minutes",
    "max-shards",
    "enabled",
    "torch-spec",
    "torch-index",
    "hardware",
    "transformers",
}


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
    for key in ("torch-spec", "torch-index", "hardware"):
        if not isinstance(table.get(key, ""), str):
            raise MatrixError(f"{where}.{key}: expected a string, got {table[key]!r}")
    hardware = table.get("hardware", "")
    if hardware and not hardware.startswith(f"{name}-"):
        raise MatrixError(
            f"{where}.hardware: {hardware!r} is not {name} hardware; expected the hardware part of a "
            f"fingerprint, e.g. '{name}-amd-epyc-f26m2-avx512'"
        )
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
        hardware=hardware,
        transformers=_releases(table["transformers"], f"{where}.transformers")
        if "transformers" in table
        else (),
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
        transformers=_releases(matrix["transformers"], f"{path}: matrix.transformers")
        if "transformers" in matrix
        else (),
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
    """How many jobs a device's cases get: the configured count, or enough to meet the target.

    A case longer than the target sets the pace instead: the run lasts at least that case, so
    shards beyond what keeps every other one under it only add runners (and their setup).
    """
    if device.shards is not None:
        wanted = device.shards
    else:
        assert device.target_minutes is not None  # load_devices_config guarantees one of the two
        pace = max([device.target_minutes * 60, *seconds.values()])
        wanted = math.ceil(sum(seconds.values()) / pace)
        wanted = min(wanted, device.max_shards)
    # An empty shard is a wasted runner; never more jobs than cases.
    return max(1, min(wanted, len(seconds)))


@dataclass(frozen=True)
class DevicePlan:
    """One device's shards and what the plan expects of them."""

    device: DeviceConfig
    seconds: dict[str, float]
    shards: list[list[str]]

    @property
    def loads(self) -> list[float]:
        """Each shard's estimated seconds."""
        return shard_loads(self.shards, self.seconds)

    @property
    def imbalance(self) -> float:
        """The expected longest shard over the mean shard."""
        return imbalance(self.loads)

    @property
    def largest(self) -> tuple[str, float]:
        """The longest case and its estimated seconds."""
        case = min(self.seconds, key=lambda c: (-self.seconds[c], c))
        return case, self.seconds[case]

    @property
    def oversized(self) -> bool:
        """Whether one case alone takes longer than ``target-minutes``: no count can meet it."""
        target = self.device.target_minutes
        return target is not None and self.largest[1] > target * 60


def device_plans(
    cases: Sequence[str],
    config: MatrixConfig,
    durations: Mapping[tuple[str, str], float],
    devices: Sequence[str] = (),
) -> list[DevicePlan]:
    """Each planned device's shards, balanced on its durations (estimates where none)."""
    plans = []
    for device in select_devices(config, devices):
        seconds = with_estimates(cases, durations_for(durations, device.name))
        plans.append(DevicePlan(device, seconds, balance(seconds, shard_count(device, seconds))))
    return plans


def _span(seconds: float) -> str:
    # Seconds below two minutes: "0.1 min over 0.1 minutes" would read as no excess at all.
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def plan_notes(plans: Sequence[DevicePlan]) -> list[str]:
    """What a reader of the plan should know that its numbers alone do not say."""
    notes = []
    for mine in plans:
        case, seconds = mine.largest
        if mine.oversized:
            notes.append(
                f"{mine.device.name}: {case} alone is estimated at {_span(seconds)}, over "
                f"target-minutes = {mine.device.target_minutes:g}: the run takes at least that long, "
                f"so {len(mine.shards)} shard(s) are planned to about {_span(seconds)} each, not more"
            )
    return notes


def releases_for(config: MatrixConfig, device: DeviceConfig, releases: Sequence[str] = ()) -> tuple[str, ...]:
    """The transformers releases a device's jobs run: ``--transformers``, else the device's, else
    the matrix's. Empty: no axis, and the jobs install the noxfile's pin."""
    if releases:
        return tuple(dict.fromkeys(parse_release(release) for release in releases))
    return device.transformers or config.transformers


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
    releases: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One matrix entry per (device, transformers release, runner, shard), in that order.

    A runner other than eager runs the parity check of every case against eager; its jobs shard
    on the same recorded durations, so plan and jobs agree on what each shard holds. A release
    (``releases``, else devices.toml's ``transformers``) is in the job's name, its
    ``transformers-spec`` (the job installs it as ``HFCI_TRANSFORMERS_SPEC``) and its artifact
    name, so shards of two releases never collide; without one both are empty and the job
    installs the workflow's spec, or the noxfile's pin.
    """
    jobs: list[dict[str, Any]] = []
    if not cases:
        return jobs
    for mine in device_plans(cases, config, durations, devices):
        device, count = mine.device, len(mine.shards)
        for release, runner, (index, shard) in (
            (release, runner, item)
            for release in releases_for(config, device, releases) or [None]
            for runner in runners
            for item in enumerate(mine.shards, start=1)
        ):
            estimated = sum(mine.seconds[case] for case in shard)
            flags = [] if runner == "eager" else ["--runner", runner]
            label = " ".join(
                [device.name]
                + ([] if runner == "eager" else [runner])
                + ([] if release is None else [f"transformers {release}"])
            )
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
                    # Empty without an axis: the workflow's transformers-spec, the noxfile's pin.
                    "transformers": release or "",
                    "transformers-spec": f"transformers=={release}" if release else "",
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
    releases: Sequence[str] = (),
) -> list[dict[str, list[dict[str, Any]]]]:
    """The matrices (``{"include": [...]}``, one per workflow slice) that run ``cases`` on ``devices``."""
    jobs = plan_jobs(cases, config, durations, devices, selection, runners, releases)
    return split(jobs, config.max_jobs, config.slices)


def to_json(matrix: Mapping[str, Any]) -> str:
    """Strict, compact JSON: what GitHub's fromJSON accepts (no NaN, no Infinity)."""
    return json.dumps(matrix, allow_nan=False, separators=(",", ":"))


def summary_markdown(
    matrices: Sequence[Mapping[str, Any]], case_count: int, notes: Sequence[str] = ()
) -> str:
    """A job-summary table: per device, its jobs, estimated minutes and expected imbalance."""
    jobs = [job for matrix in matrices for job in matrix["include"]]
    if not jobs:
        return f"### hfci matrix\n\nNo jobs: the selection has {case_count} cases and no device to run them."
    # The transformers axis gets a column only when the plan has one: today's tables stay as they were.
    axis = any(job.get("transformers") for job in jobs)
    lines = [
        "### hfci matrix",
        "",
        f"{len(jobs)} jobs in {sum(1 for m in matrices if m['include'])} matrix slice(s), {case_count} cases.",
        "",
        "| device |"
        + (" transformers |" if axis else "")
        + " runs-on | jobs | estimated minutes (total) | longest job (min) | longest / mean job |",
        "|---|" + ("---|" if axis else "") + "---|---:|---:|---:|---:|",
    ]
    for device, release in dict.fromkeys((job["device"], job.get("transformers", "")) for job in jobs):
        mine = [job for job in jobs if job["device"] == device and job.get("transformers", "") == release]
        total = sum(job["estimated_seconds"] for job in mine) / 60
        longest = max(job["estimated_seconds"] for job in mine) / 60
        labels = ", ".join(mine[0]["runs-on"])
        ratio = imbalance([job["estimated_seconds"] for job in mine])
        release_cell = f" {release or 'pinned'} |" if axis else ""
        lines.append(
            f"| {device} |{release_cell} {labels} | {len(mine)} | {total:.1f} | {longest:.1f} | {ratio:.2f} |"
        )
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
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
        "--hardware",
        nargs="+",
        default=[],
        metavar="HW",
        help="the hardware the jobs run on, per device (the hardware part of a fingerprint, e.g. "
        "cpu-amd-epyc-f26m2-avx512): durations recorded elsewhere are scaled to it "
        "(default: devices.toml's hardware, else the freshest recorded)",
    )
    parser.add_argument(
        "--transformers",
        action="append",
        default=[],
        metavar="RELEASE",
        help="run every device's jobs once per transformers release (repeatable: --transformers 5.23.0 "
        "--transformers 5.24.0); default: devices.toml's transformers, else no axis (the noxfile's pin)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the matrices are written (default: the project's matrices folder)",
    )
    parser.set_defaults(func=cmd_matrix)


def hardware_targets(config: MatrixConfig, values: Sequence[str] = ()) -> dict[str, str]:
    """device -> the hardware its jobs run on: ``--hardware`` values (each names its device by its
    prefix, as a fingerprint does), over devices.toml's ``hardware``."""
    targets = {name: device.hardware for name, device in config.devices.items() if device.hardware}
    for value in values:
        device = value.partition("-")[0]
        if device not in KNOWN_DEVICES or not value.partition("-")[2]:
            raise MatrixError(
                f"--hardware {value!r}: expected the hardware part of a fingerprint, starting with "
                f"the device ({', '.join(KNOWN_DEVICES)}), e.g. 'cpu-amd-epyc-f26m2-avx512'"
            )
        targets[device] = value
    return targets


def release_notes(
    config: MatrixConfig, devices: Sequence[DeviceConfig], releases: Sequence[str], installed: str
) -> list[str]:
    """What the plan of a transformers axis assumes: one catalog, and durations shared by releases."""
    axis = {device.name: releases_for(config, device, releases) for device in devices}
    named = list(dict.fromkeys(release for mine in axis.values() for release in mine))
    if not named:
        return []
    notes = [
        f"{name}: transformers {', '.join(mine)}" if mine else f"{name}: the pinned transformers (no axis)"
        for name, mine in axis.items()
    ]
    notes.append(
        "durations are recorded per device and hardware, not per release: every release's jobs shard on "
        "the same ones, so a release no run recorded reuses the others' (a case none has, such as a model "
        "type new in that release, gets the median estimate)"
    )
    others = [release for release in named if release != installed]
    if others:
        notes.append(
            f"cases counted on the installed transformers {installed}: the jobs of {', '.join(others)} shard "
            "that release's own cases, so their case counts and estimates are approximate"
        )
    return notes


def cmd_matrix(args: argparse.Namespace) -> int:
    """``hfci matrix``: plan the selection on every configured device, write the matrices."""
    selection = Selection.from_namespace(args)
    config = load_devices_config(args.config or default_config())
    if config.path == PACKAGED_CONFIG:
        where = folder("matrices") / "devices.toml"
        print(f"hfci matrix: no {where}: planning with hfci's default devices config", file=sys.stderr)
    args.out = args.out or folder("matrices")
    # A bad --device or --transformers fails before the catalog is read.
    planned_devices = select_devices(config, selection.device)
    planned = {device.name for device in planned_devices}
    releases = [parse_release(release) for release in args.transformers]
    catalog = load_catalog()
    cases = selection.case_ids(catalog)
    previous = args.out / "durations.json"
    if args.durations is not None:
        recorded = read_recorded(args.durations)
    else:
        recorded = read_recorded([previous]) if previous.is_file() else {}
    targets = hardware_targets(config, args.hardware)
    for device in set(targets) - planned:
        if any(value.startswith(f"{device}-") for value in args.hardware):
            raise MatrixError(f"--hardware names {device} hardware, but this plan has no {device} jobs")
        del targets[device]  # devices.toml's, for a device not planned now: its durations stay as they are
    durations, hardware, scalings = durations_on(recorded, targets)
    for name in selection.runner:
        if name not in runners.available():
            raise runners.RunnerError(f"unknown runner {name!r}; valid: {', '.join(runners.available())}")
    # Each job adds its own device, shard and runner to what the plan selected.
    job_selection = selection.with_values(device=(), runner=()).argv()
    matrices = plan(
        cases, config, durations, selection.device, job_selection, selection.runner or ["eager"], releases
    )
    notes = [note.describe() for note in scalings if note.device in planned and note.used]
    notes += plan_notes(device_plans(cases, config, durations, selection.device))
    notes += release_notes(config, planned_devices, releases, catalog.transformers_version)

    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("matrix-*.json"):
        stale.unlink()
    for number, matrix in enumerate(matrices, start=1):
        (args.out / f"matrix-{number}.json").write_text(to_json(matrix) + "\n", encoding="utf-8")
        github.set_output(f"matrix-{number}", to_json(matrix))
        github.set_output(f"jobs-{number}", str(len(matrix["include"])))
    # The jobs shard with these exact numbers; they must see what the plan saw.
    write_durations(durations, previous, hardware)
    total = sum(len(m["include"]) for m in matrices)
    github.set_output("jobs", str(total))
    github.set_output("max-parallel", str(config.max_parallel))
    # The aggregate job reports each release apart: empty without an axis.
    axis = dict.fromkeys(job["transformers"] for m in matrices for job in m["include"] if job["transformers"])
    github.set_output("transformers", " ".join(axis))
    github.append_summary(summary_markdown(matrices, len(cases), notes))
    for note in notes:
        print(f"hfci matrix: {note}", file=sys.stderr)
    print(f"hfci matrix: {total} jobs for {len(cases)} cases, written to {args.out}/matrix-*.json")
    return 0
