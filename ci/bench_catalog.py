"""Cold wall time of `hfci catalog` and `hfci matrix`: median of N fresh processes.

Run it in a venv with torch and in one without (``nox -s bench_catalog``) and compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time


def cold_seconds(args: list[str], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hfci.cli", *args], check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch = "with torch" if importlib.util.find_spec("torch") else "without torch"
    for command in (
        ["catalog", "--format", "json"],
        ["matrix", "--device", "cpu", "--out", "/tmp/hfci-bench"],
    ):
        samples = cold_seconds(command, args.repeats)
        print(
            f"hfci {command[0]:8s} {torch:14s} median {statistics.median(samples):.2f} s "
            f"(min {min(samples):.2f}, max {max(samples):.2f}, n={len(samples)})"
        )


if __name__ == "__main__":
    main()
