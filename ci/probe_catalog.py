"""Probe the catalog's core checks with known failures ignored: what really breaks, and where.

    python ci/probe_catalog.py --out probe.json                 # every case, 2 processes
    python ci/probe_catalog.py --model detr --model dpt -v      # a few types, errors printed

Each case is built and run through forward, determinism and save/load in a fresh worker
process (one crash or hang costs one case). The JSON lists, per case, the first failing check,
the error and the innermost transformers frame that raised it; the last line prints the share
of model types passing all three on at least one head, the figure issue #3 asks for.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import traceback
import warnings
from collections import Counter
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CORE = ("forward", "determinism", "save_load")


def _timeout(signum: int, frame: Any) -> None:
    raise TimeoutError("the case ran past --timeout")


def probe(model_type: str, head: str, timeout: int = 120) -> dict[str, Any]:
    """The first failing core check of one case, with its error and where it was raised."""
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(timeout)
    try:
        return _probe(model_type, head)
    finally:
        signal.alarm(0)


def _probe(model_type: str, head: str) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    from transformers.utils import logging

    logging.set_verbosity_error()
    from hfci import checks
    from hfci.case import build_case
    from hfci.catalog import load_catalog
    from hfci.factory import MissingDependency

    record = load_catalog()[model_type]
    stage = "build"
    out: dict[str, Any] = {"case": f"{model_type}/{head}", "category": record.category}
    try:
        case = build_case(record, head)
        out["parameters"] = case.parameters
        stage = "forward"
        reference = checks.check_forward(case)
        stage = "determinism"
        checks.check_determinism(case, reference)
        stage = "save_load"
        checks.check_save_load(case, reference)
        out["status"] = "pass"
    except MissingDependency as error:
        out.update(status="missing", check=stage, error=str(error))
    except BaseException as error:
        frames = traceback.extract_tb(error.__traceback__)
        where = next(
            (
                f"{f.filename.split('site-packages/')[-1]}:{f.lineno}"
                for f in reversed(frames)
                if "transformers" in f.filename or "torch" in f.filename
            ),
            "",
        )
        cause = error.__cause__ or error
        out.update(
            status="fail",
            check=stage,
            error=f"{type(cause).__name__}: {str(cause).strip()[:400]}",
            where=where,
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], help="model types (default: all)")
    parser.add_argument("--category", action="append", default=[])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=120, help="seconds per case")
    parser.add_argument("--out", help="write the per-case JSON here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    args = parser.parse_args()

    from hfci.catalog import load_catalog

    records = [r for r in load_catalog().select(args.category, (), (), args.model) if r.has_model]
    cases = [(r.model_type, h.name) for r in records for h in r.heads]
    context = multiprocessing.get_context("spawn")
    results: list[dict[str, Any]] = []
    # A fresh worker now and then: a model that leaks memory or global state costs little later.
    with context.Pool(args.workers, maxtasksperchild=64) as pool:
        pending = [(case, pool.apply_async(probe, (*case, args.timeout))) for case in cases]
        for (model_type, head), job in pending:
            try:
                # Cases run in submission order; one that never answers crashed its worker.
                result = job.get(timeout=args.timeout + 30)
            except multiprocessing.TimeoutError:
                result = {
                    "case": f"{model_type}/{head}",
                    "status": "fail",
                    "check": "?",
                    "error": "worker died",
                }
            results.append(result)
            if args.verbose and result["status"] != "pass":
                print(
                    f"{result['case']}: {result.get('check')}: {result.get('error')} @ {result.get('where')}"
                )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    passing = {r["case"].split("/")[0] for r in results if r["status"] == "pass"}
    types = {c[0] for c in cases}
    by_status = Counter(r["status"] for r in results)
    print(
        f"model types passing forward, determinism and save/load on a head: "
        f"{len(passing)}/{len(types)} ({100 * len(passing) / max(len(types), 1):.1f} %); "
        f"cases: {by_status['pass']}/{len(results)}; {dict(by_status)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
