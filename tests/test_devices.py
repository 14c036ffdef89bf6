"""Device detection, ``--device`` validation and the fingerprint that keys baselines."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import pytest

from hfci import devices

torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()


def test_importing_devices_does_not_import_torch() -> None:
    code = "import sys, hfci.devices; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cpu_is_always_available() -> None:
    present = devices.available_devices()
    assert present[0] == "cpu"
    assert set(present) <= set(devices.KNOWN_DEVICES)
    assert devices.best_device() in present
    assert devices.resolve_device("cpu") == "cpu"
    assert devices.resolve_device(None) == devices.resolve_device("auto") == devices.best_device()


def test_an_accelerator_present_is_preferred() -> None:
    present = devices.available_devices()
    expected = next(d for d in ("cuda", "xpu", "mps") if d in present) if len(present) > 1 else "cpu"
    assert devices.best_device() == expected


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:x", "tpu", ""])
def test_an_unknown_device_names_the_valid_ones(name: str) -> None:
    with pytest.raises(devices.DeviceError, match=r"unknown device .*; valid: auto, cpu, cuda, mps, xpu"):
        devices.resolve_device(name)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_cuda_named_but_absent_is_an_error_not_a_cpu_fallback() -> None:
    with pytest.raises(
        devices.DeviceError, match=r"device 'cuda' is not available here \(.*\); present: cpu"
    ):
        devices.resolve_device("cuda")
    with pytest.raises(devices.DeviceError, match="not available here"):
        devices.resolve_device("cuda:0")


def test_every_absent_known_device_is_an_error() -> None:
    for name in set(devices.KNOWN_DEVICES) - set(devices.available_devices()):
        with pytest.raises(devices.DeviceError, match=f"device '{name}' is not available here"):
            devices.resolve_device(name)


def test_describe_cpu() -> None:
    info = devices.describe("cpu")
    assert info["device"] == "cpu"
    assert info["cpu"] and info["name"] == info["cpu"]
    assert info["torch"] == importlib.metadata.version("torch")
    assert info["transformers"] == importlib.metadata.version("transformers")
    with pytest.raises(devices.DeviceError, match="unknown device"):
        devices.describe("tpu")


def test_the_fingerprint_is_a_stable_filesystem_safe_slug() -> None:
    fingerprint = devices.fingerprint("cpu")
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", fingerprint), fingerprint
    assert fingerprint.startswith(f"cpu-{devices.slug(devices.cpu_model())}-")
    assert f"-torch{devices.slug(importlib.metadata.version('torch'))}-" in fingerprint
    assert fingerprint.endswith(f"-transformers{importlib.metadata.version('transformers')}")
    assert devices.fingerprint("cpu") == fingerprint
    # The CPU's family/model and torch's vector ISA follow its name: a bare "AMD EPYC" is not one machine.
    assert f"-{devices.slug(devices.cpu_model())}-{devices.cpu_signature()}-torch" in fingerprint


@pytest.mark.parametrize(
    ("cpuinfo", "capability", "expected"),
    [
        (
            "vendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n",
            "AVX512",
            "f26m2-avx512",
        ),
        ("cpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n", "AVX2", "f25m17-avx2"),
        ("processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xD0C\n", "DEFAULT", "part0xd0c-default"),
        ("", None, ""),
    ],
)
def test_the_cpu_signature_tells_generations_of_one_name_apart(cpuinfo, capability, expected) -> None:
    assert devices.signature_of(cpuinfo, capability) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Intel(R) Xeon(R) Platinum 8488C", "intel-xeon-platinum-8488c"),
        ("AMD EPYC 7763 64-Core Processor", "amd-epyc-7763-64-core-processor"),
        ("Apple M2 Pro", "apple-m2-pro"),
        ("2.13.0+cu128", "2.13.0-cu128"),
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("///", "unknown"),
    ],
)
def test_slug(text: str, expected: str) -> None:
    assert devices.slug(text) == expected


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_is_detected_and_described() -> None:
    assert "cuda" in devices.available_devices()
    assert devices.best_device() == "cuda"
    info = devices.describe("cuda")
    assert info["count"] == torch.cuda.device_count()
    assert info["name"] == torch.cuda.get_device_name(0)
    assert re.fullmatch(r"\d+\.\d+", info["capability"])
    assert info["memory_bytes"] > 0
    fingerprint = devices.fingerprint("cuda")
    assert fingerprint.startswith(f"cuda-{devices.slug(info['name'])}-sm")
    with pytest.raises(devices.DeviceError, match="cuda has"):
        devices.resolve_device(f"cuda:{torch.cuda.device_count()}")
