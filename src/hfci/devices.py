"""Devices: what hardware this machine has, and a fingerprint of it that keys baseline files.

torch is imported inside functions only: the matrix planner imports this module on machines
without torch, and importing torch costs seconds even where it is installed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Any

from hfci import data
from hfci.errors import HfciError

__all__ = [
    "KNOWN_DEVICES",
    "PREFERENCE",
    "DeviceError",
    "available_devices",
    "best_device",
    "cpu_model",
    "cpu_signature",
    "describe",
    "fingerprint",
    "resolve_device",
    "signature_of",
    "slug",
]

KNOWN_DEVICES: tuple[str, ...] = tuple(data.load("devices")["known"])


class DeviceError(HfciError):
    """A device that is unknown, or not present on this machine."""


# Which present device ``best_device`` picks: the fastest kind of accelerator first.
PREFERENCE: tuple[str, ...] = tuple(data.load("devices")["preference"])


def _torch() -> Any | None:
    """The torch module, or None where it is not installed (the planner's machines)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _count(device: str) -> int:
    """How many devices of one kind are usable here (cpu: always 1)."""
    if device == "cpu":
        return 1
    torch = _torch()
    if torch is None:
        return 0
    if device == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        return 1 if mps is not None and mps.is_available() else 0
    if device == "xpu":
        xpu = getattr(torch, "xpu", None)
        return xpu.device_count() if xpu is not None and xpu.is_available() else 0
    return 0


def available_devices() -> list[str]:
    """The kinds of device present here, in ``KNOWN_DEVICES`` order; cpu is always present."""
    return [device for device in KNOWN_DEVICES if _count(device) > 0]


def best_device() -> str:
    """The preferred device present here (an accelerator if there is one)."""
    present = available_devices()
    return next(device for device in PREFERENCE if device in present)


def resolve_device(name: str | None = None) -> str:
    """Validate a ``--device`` value: ``cpu``, ``cuda``, ``cuda:1``, ...; None or ``auto`` picks the best.

    A device that is named but absent is an error: a run asked for CUDA must not quietly
    pass on CPU.
    """
    if name is None or name == "auto":
        return best_device()
    kind, _, index = name.partition(":")
    if kind not in KNOWN_DEVICES or (index and not index.isdigit()):
        raise DeviceError(f"unknown device {name!r}; valid: auto, {', '.join(KNOWN_DEVICES)} (or cuda:N)")
    count = _count(kind)
    if count == 0:
        present = ", ".join(available_devices())
        why = "torch is not installed" if _torch() is None else f"torch {_version('torch')} sees none"
        raise DeviceError(f"device {name!r} is not available here ({why}); present: {present}")
    if index and int(index) >= count:
        raise DeviceError(
            f"device {name!r} is not available here: {kind} has {count} device(s) (0-{count - 1})"
        )
    return name


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux, else what platform reports."""
    text = _cpuinfo()
    # x86 says "model name"; some ARM kernels say "Hardware" or "Model" instead.
    for key in ("model name", "Hardware", "Model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match and match.group(1).strip():
            return match.group(1).strip()
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def signature_of(cpuinfo: str, capability: str | None) -> str:
    """The x86 family and model (or the ARM part) and the vector ISA torch dispatches to.

    ``f26m2-avx512``. Virtual machines often show a bare "AMD EPYC" as the model name: two CPU
    generations under that one name timed the same tiny models 26-34 % apart.
    """
    parts = []
    family = re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.MULTILINE)
    model = re.search(r"^model\s*:\s*(\d+)", cpuinfo, re.MULTILINE)
    if family and model:
        parts.append(f"f{family.group(1)}m{model.group(1)}")
    else:
        part = re.search(r"^CPU part\s*:\s*(\w+)", cpuinfo, re.MULTILINE)
        if part:
            parts.append(f"part{part.group(1).lower()}")
    if capability:
        parts.append(capability.lower())
    return "-".join(parts)


@functools.cache
def cpu_signature() -> str:
    """This machine's :func:`signature_of` (empty where nothing is known)."""
    torch = _torch()
    capability = None
    if torch is not None:
        capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    return signature_of(_cpuinfo(), capability)


def _accelerator(device: str) -> dict[str, Any]:
    """What torch says about an accelerator (the first of its kind unless an index is given)."""
    kind, _, index = device.partition(":")
    position = int(index or 0)
    torch = _torch()
    info: dict[str, Any] = {"count": _count(kind)}
    if torch is None or info["count"] == 0:
        return info
    if kind == "cuda":
        props = torch.cuda.get_device_properties(position)
        info |= {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_bytes": int(props.total_memory),
            "cuda": torch.version.cuda,
        }
    elif kind == "xpu":
        props = torch.xpu.get_device_properties(position)
        info |= {"name": props.name, "memory_bytes": int(getattr(props, "total_memory", 0))}
    elif kind == "mps":
        # MPS shares the system memory and has no device-name API: the chip is the CPU model.
        info |= {"name": cpu_model()}
    return info


def describe(device: str = "cpu") -> dict[str, Any]:
    """What a baseline needs to know about the machine that ran it."""
    kind = device.partition(":")[0]
    if kind not in KNOWN_DEVICES:
        raise DeviceError(f"unknown device {device!r}; valid: {', '.join(KNOWN_DEVICES)}")
    info: dict[str, Any] = {
        "device": device,
        "name": cpu_model() if kind == "cpu" else None,
        "cpu": cpu_model(),
        "cpu_signature": cpu_signature(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
    }
    if kind != "cpu":
        accelerator = _accelerator(device)
        info["name"] = accelerator.pop("name", None)
        info |= accelerator
    return info


def slug(text: str) -> str:
    """A lower-case, filesystem-safe form of free text: letters, digits, dots, hyphens."""
    text = re.sub(r"\((?:r|tm)\)", "", text.lower())
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-.") or "unknown"


def fingerprint(device: str = "cpu") -> str:
    """The key of a baseline file: device kind and name, CPU model and signature, torch and
    transformers versions.

    ``cpu-amd-epyc-f26m2-avx512-torch2.13.0-cpu-transformers5.23.0``. A GPU's host CPU is in it
    too, because the host sets the launch overhead that dominates tiny models.
    """
    info = describe(device)
    kind = device.partition(":")[0]
    parts = [kind]
    if kind != "cpu":
        parts.append(slug(info["name"] or "absent"))
        if info.get("capability"):
            parts.append("sm" + info["capability"].replace(".", ""))
    parts.append(slug(info["cpu"]))
    if info["cpu_signature"]:
        parts.append(slug(info["cpu_signature"]))
    parts += ["torch" + slug(info["torch"]), "transformers" + slug(info["transformers"])]
    return "-".join(parts)
