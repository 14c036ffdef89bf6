"""Time one forward of every case in one process, and watch the process's memory grow.

    python ci/probe_forward.py --out forward.jsonl                  # the whole catalog (minutes)
    python ci/probe_forward.py --model falcon_h1 --model depth_pro  # a few types
    python ci/probe_forward.py --model falcon_h1 --profile 15       # plus the top 15 torch ops
    python ci/probe_forward.py --summary forward.jsonl              # the slowest and largest again

Every case is built (``hfci.case.build_case``) and its seeded forward run ``--repeat`` times
after one warm-up, with ``torch.set_num_threads(1)``: the per-case build and forward times (the
forward's median), its parameter count, and the process's resident memory (RSS) after the case.
Cases run one after another in this one process, as a pytest worker runs them, so the RSS column
is also the peak-memory probe: where it jumps, one case's model is big; where it creeps up across
cases, memory is not given back. ``--release`` then measures, after each case, the RSS once the
case is dropped, after ``gc.collect()`` and after glibc's ``malloc_trim(0)``: what the allocator
holds but does not return to the system.

One JSON object per case is appended to ``--out`` as it finishes (a case that kills the process
leaves the ones before it); the last lines print the slowest forwards and the largest RSS steps.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import signal
import statistics
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_mb() -> float:
    """The resident memory of this process now, in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The most resident memory this process has held since ``reset_peak``, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    """Start the high-water mark over from the current RSS (Linux 4.0+), so each case has its own."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _timeout(signum: int, frame: Any) -> None:
    raise TimeoutError("the case ran past --timeout")


def probe(record: Any, head: str, repeat: int, profile: int, release: bool) -> dict[str, Any]:
    """One case: build, warm-up forward, ``repeat`` timed forwards, memory after."""
    from hfci.case import build_case
    from hfci.outputs import seeded_forward

    reset_peak()
    out: dict[str, Any] = {"case": f"{record.model_type}/{head}", "rss_before_mb": round(rss_mb(), 1)}
    stage = "build"
    try:
        start = time.perf_counter()
        case = build_case(record, head, "cpu")
        out["build_ms"] = round(1000 * (time.perf_counter() - start), 1)
        out["parameters"] = case.parameters
        out["rss_built_mb"] = round(rss_mb(), 1)
        stage = "forward"
        start = time.perf_counter()
        seeded_forward(case.model, case.inputs)
        out["first_forward_ms"] = round(1000 * (time.perf_counter() - start), 1)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            seeded_forward(case.model, case.inputs)
            times.append(1000 * (time.perf_counter() - start))
        if times:
            out["forward_ms"] = round(statistics.median(times), 1)
        if profile:
            out["profile"] = _profile(case, profile)
        out["status"] = "ok"
    except BaseException as error:  # one broken case must not stop the loop
        if isinstance(error, KeyboardInterrupt):
            raise
        out.update(status="fail", stage=stage, error=f"{type(error).__name__}: {str(error)[:200]}")
    finally:
        out["rss_after_mb"] = round(rss_mb(), 1)
        # the case's own peak: the high-water mark was reset as it started
        out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if release:
        with contextlib.suppress(NameError):
            del case
        gc.collect()
        out["rss_gc_mb"] = round(rss_mb(), 1)
        _malloc_trim()
        out["rss_trim_mb"] = round(rss_mb(), 1)
    return out


def _profile(case: Any, top: int) -> list[str]:
    """The ``top`` torch operators by self CPU time of one forward."""
    from torch.profiler import ProfilerActivity, profile

    from hfci.outputs import seeded_forward

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        seeded_forward(case.model, case.inputs)
    table = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=top)
    return table.splitlines()


def summary(rows: list[dict[str, Any]], top: int) -> None:
    """The slowest forwards, the largest RSS steps, the peak."""
    ok = [r for r in rows if "forward_ms" in r or "first_forward_ms" in r]
    print(f"\n{len(rows)} cases, {sum(r.get('status') != 'ok' for r in rows)} failed")
    print("\nslowest forwards (median ms, first ms, build ms, parameters):")
    for r in sorted(ok, key=lambda r: -r.get("forward_ms", r.get("first_forward_ms", 0)))[:top]:
        print(
            f"  {r['case']:60s} {r.get('forward_ms', '-'):>9} {r.get('first_forward_ms', '-'):>9} "
            f"{r.get('build_ms', '-'):>9} {r.get('parameters', 0):>11,}"
        )
    print("\nlargest RSS steps over one case (MiB: before -> after):")
    for r in sorted(rows, key=lambda r: r["rss_before_mb"] - r["rss_after_mb"])[:top]:
        print(f"  {r['case']:60s} {r['rss_before_mb']:>8} -> {r['rss_after_mb']:>8}  peak {r['peak_rss_mb']}")
    print("\nhighest peaks within one case (MiB: peak, peak - RSS before):")
    for r in sorted(rows, key=lambda r: -r["peak_rss_mb"])[:top]:
        print(f"  {r['case']:60s} {r['peak_rss_mb']:>8} {r['peak_rss_mb'] - r['rss_before_mb']:>+8.1f}")
    peak = max(rows, key=lambda r: r["peak_rss_mb"], default=None)
    if peak:
        print(f"\npeak RSS {peak['peak_rss_mb']} MiB, in {peak['case']}")
        last = rows[-1]
        trimmed = f", {last['rss_trim_mb']} after gc + malloc_trim" if "rss_trim_mb" in last else ""
        print(f"RSS at the end {last['rss_after_mb']} MiB{trimmed}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], help="model types (default: all)")
    parser.add_argument("--category", action="append", default=[])
    parser.add_argument("--head", action="append", default=[], help="only these heads")
    parser.add_argument("--skip", action="append", default=[], help="model types to leave out")
    parser.add_argument("--repeat", type=int, default=3, help="timed forwards after the warm-up")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per case")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N torch ops")
    parser.add_argument("--release", action="store_true", help="RSS after gc.collect and malloc_trim too")
    parser.add_argument("--out", help="append one JSON line per case here")
    parser.add_argument("--summary", metavar="JSONL", help="only print the summary of an earlier --out")
    parser.add_argument("--top", type=int, default=25, help="rows in the summary")
    args = parser.parse_args()

    if args.summary:
        with open(args.summary) as f:
            summary([json.loads(line) for line in f if line.strip()], args.top)
        return 0

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()
    from hfci.catalog import load_catalog

    records = [r for r in load_catalog().select(args.category, (), (), args.model) if r.has_model]
    cases = [
        (r, h.name)
        for r in records
        if r.model_type not in args.skip
        for h in r.heads
        if not args.head or h.name in args.head
    ]
    signal.signal(signal.SIGALRM, _timeout)
    rows = []
    out = open(args.out, "a") if args.out else None  # noqa: SIM115 - appended to case by case
    try:
        for index, (record, head) in enumerate(cases, 1):
            signal.alarm(args.timeout)
            try:
                row = probe(record, head, args.repeat, args.profile, args.release)
            finally:
                signal.alarm(0)
            profile = row.pop("profile", None)
            rows.append(row)
            print(
                f"[{index}/{len(cases)}] {row['case']}: {row.get('forward_ms', '-')} ms, "
                f"RSS {row['rss_after_mb']} MiB {row.get('error', '')}",
                flush=True,
            )
            if profile:
                print("\n".join(profile))
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
    finally:
        if out:
            out.close()
    summary(rows, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
