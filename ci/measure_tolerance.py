"""Measure how far float32 forwards that should agree actually differ, per category.

For each case: the seeded eager forward with torch's default thread count against the same
forward on one thread (another summation order in every matmul and reduction), and against sdpa
attention where the model has it. The figure per output tensor is hfci's comparison's: the
largest absolute difference over the tensor's largest magnitude (``atol`` relative to scale,
see hfci.outputs.compare). The parity tolerance of float32 runners (hfci.runners.TOLERANCES) is
set from these maxima with a margin; the README quotes them.

With ``--training``, the same for one training step's gradients (where the head trains): each
parameter's gradient is judged on its own largest magnitude, but never on less than ``--floor``
times the largest gradient of the model (hfci.checks.GRADIENT_FLOOR), as a gradient that is zero
in exact arithmetic is rounding alone.

    python ci/measure_tolerance.py [--one-head] [--category text ...] [--training] [--out tolerance.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import torch

from hfci import checks, runners, training
from hfci.case import build_case
from hfci.catalog import load_catalog
from hfci.outputs import seeded_forward, tensors


def relative_gap(reference, other) -> float | None:
    """max |a - b| / max |a| over the float tensors both outputs share (None when none)."""
    ref, got = dict(tensors(reference)), dict(tensors(other))
    gaps = []
    for name, a in ref.items():
        b = got.get(name)
        if b is None or a.shape != b.shape or not a.is_floating_point():
            continue
        x, y = a.float(), b.float()
        finite = x.isfinite() & y.isfinite()
        if not finite.any():
            continue
        scale = x[finite].abs().max().item() or 1.0
        gaps.append((x[finite] - y[finite]).abs().max().item() / scale)
    return max(gaps) if gaps else None


def measure(case) -> dict[str, float | None]:
    default_threads = torch.get_num_threads()
    reference = seeded_forward(case.model, case.inputs)
    torch.set_num_threads(1)
    try:
        one_thread = seeded_forward(case.model, case.inputs)
    finally:
        torch.set_num_threads(default_threads)
    found = {"threads": relative_gap(reference, one_thread)}
    try:
        found["sdpa"] = relative_gap(
            runners.eager(case.model, case.inputs), runners.sdpa(case.model, case.inputs)
        )
    except runners.RunnerSkip:
        found["sdpa"] = None
    return found


def measure_training(case, floor: float) -> dict[str, float | None]:
    try:
        inputs = training.labelled(case.model, case.record.head(case.head).mappings, case.inputs)
        reference = runners.eager.train(case.model, inputs)
    except training.NoLabels:
        return {}
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = runners.eager.train(case.model, inputs)
    finally:
        torch.set_num_threads(default_threads)
    found = {"threads": training.gradient_gap(reference, one_thread, floor)[0]}
    try:
        found["sdpa"] = training.gradient_gap(reference, runners.sdpa.train(case.model, inputs), floor)[0]
    except runners.RunnerSkip:
        found["sdpa"] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", action="append", default=[])
    parser.add_argument("--one-head", action="store_true")
    parser.add_argument("--training", action="store_true", help="gradients of one training step")
    parser.add_argument("--floor", type=float, default=checks.GRADIENT_FLOOR)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    catalog = load_catalog()
    per_category: dict[str, dict[str, list[tuple[float, str]]]] = defaultdict(lambda: defaultdict(list))
    started = time.perf_counter()
    for record in catalog:
        if not record.has_model or (args.category and record.category not in args.category):
            continue
        heads = record.heads[:1] if args.one_head else record.heads
        for head in heads:
            try:
                case = build_case(record, head.name)
                found = measure_training(case, args.floor) if args.training else measure(case)
            except Exception:  # what does not build or run is the checks' to report
                continue
            for kind, gap in found.items():
                if gap is not None:
                    per_category[record.category][kind].append((gap, f"{record.model_type}/{head.name}"))
    print(f"{'category':12} {'comparison':8} {'cases':>5} {'median':>9} {'p99':>9} {'max':>9}  worst case")
    summary = {}
    for category, kinds in sorted(per_category.items()):
        for kind, gaps in sorted(kinds.items()):
            gaps.sort()
            values = [g for g, _ in gaps]
            row = {
                "cases": len(values),
                "median": values[len(values) // 2],
                "p99": values[min(len(values) - 1, int(len(values) * 0.99))],
                "max": values[-1],
                "worst": gaps[-1][1],
                "ten_worst": [[case, gap] for gap, case in gaps[-10:][::-1]],
            }
            summary.setdefault(category, {})[kind] = row
            print(
                f"{category:12} {kind:8} {row['cases']:5} {row['median']:9.2e} {row['p99']:9.2e} "
                f"{row['max']:9.2e}  {row['worst']}"
            )
    print(
        f"({time.perf_counter() - started:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
