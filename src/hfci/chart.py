"""Chart: the model coverage report as a picture, an SVG written by hand.

Two panels: the pass rate of every category on every device (a heatmap), and the distribution of
benchmark latency medians per device (a box plot over a log axis, since tiny models span several
decades). Plain SVG text keeps hfci free of a plotting dependency and the file diffable.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["rate_colour", "render", "write"]


def _escape(text: str, apostrophe: bool = False) -> str:
    """Text safe inside SVG markup. (xml.sax.saxutils would pull urllib and ssl into every
    ``hfci`` start through the report.)"""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("'", "&apos;") if apostrophe else text


# Layout, in SVG user units (pixels).
WIDTH = 760
MARGIN = 20
LABEL_W = 120
CELL_W = 110
CELL_H = 26
BOX_H = 22
AXIS_W = WIDTH - 2 * MARGIN - LABEL_W - 30  # room for the last tick label
FONT = "font-family='sans-serif'"


def rate_colour(rate: float) -> str:
    """Red at 0 %, amber at 50 %, green at 100 %: readable without a legend."""
    rate = min(max(rate, 0.0), 1.0)
    if rate < 0.5:
        red, green = 215, int(60 + 300 * rate)
    else:
        red, green = int(215 - 330 * (rate - 0.5)), 190
    return f"#{red:02x}{green:02x}50"


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "", size: int = 12) -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' {FONT} font-size='{size}'{extra}>"
        f"{_escape(text)}</text>"
    )


def _heatmap(rates: Mapping[str, Mapping[str, tuple[int, int]]], top: float) -> tuple[list[str], float]:
    """Rows are categories, columns devices; each cell 'passed/total'. Returns elements and height."""
    devices = sorted({d for row in rates.values() for d in row})
    out = [
        _text(
            MARGIN,
            top + 14,
            "Pass rate by category and device (cases passing / cases)",
            extra=" font-weight='bold'",
        )
    ]
    y = top + 26
    for i, device in enumerate(devices):
        out.append(_text(MARGIN + LABEL_W + i * CELL_W + CELL_W / 2, y + 14, device, "middle"))
    y += 20
    if not devices:
        out.append(_text(MARGIN, y + 16, "no cases in this report"))
        return out, y + 26 - top
    for category in sorted(rates):
        out.append(_text(MARGIN, y + CELL_H / 2 + 4, category))
        for i, device in enumerate(devices):
            x = MARGIN + LABEL_W + i * CELL_W
            passed, total = rates[category].get(device, (0, 0))
            if total:
                colour, label = rate_colour(passed / total), f"{passed / total:.0%} ({passed}/{total})"
            else:
                colour, label = "#dddddd", "—"
            out.append(
                f"<rect x='{x + 1}' y='{y + 1}' width='{CELL_W - 2}' height='{CELL_H - 2}' fill='{colour}'>"
                f"<title>{_escape(f'{category} on {device}: {passed} of {total} cases pass')}</title></rect>"
            )
            out.append(_text(x + CELL_W / 2, y + CELL_H / 2 + 4, label, "middle"))
        y += CELL_H
    return out, y - top


def _decades(values: Sequence[float]) -> tuple[int, int]:
    low = math.floor(math.log10(min(values)))
    high = math.ceil(math.log10(max(values)))
    return low, max(high, low + 1)


def _duration_label(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:g} ms"
    return f"{seconds * 1e6:g} µs"


def _box(device: str, values: Sequence[float], y: float, scale: Callable[[float], float]) -> list[str]:
    """One device's row: label, whiskers to min/max, the quartile box, the median, a tick per case."""
    q1, median, q3 = (
        statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    )
    mid = y + BOX_H / 2
    summary = f"{device}: median {_duration_label(median)}, quartiles {_duration_label(q1)} to {_duration_label(q3)}"
    return [
        _text(MARGIN, mid + 4, f"{device} ({len(values)})"),
        f"<line x1='{scale(values[0]):.1f}' y1='{mid}' x2='{scale(values[-1]):.1f}' y2='{mid}' stroke='#555'/>",
        f"<rect x='{scale(q1):.1f}' y='{y + 3}' width='{max(scale(q3) - scale(q1), 1):.1f}' "
        f"height='{BOX_H - 6}' fill='#9ecae1' stroke='#3182bd'>"
        f"<title>{_escape(summary)}</title></rect>",
        f"<line x1='{scale(median):.1f}' y1='{y + 2}' x2='{scale(median):.1f}' y2='{y + BOX_H - 2}' "
        "stroke='#08306b' stroke-width='2'/>",
        *(
            f"<line x1='{scale(v):.1f}' y1='{y + BOX_H - 3}' x2='{scale(v):.1f}' y2='{y + BOX_H}' stroke='#333' stroke-opacity='0.4'/>"
            for v in values
        ),
    ]


def _axis(low: int, high: int, y: float, scale: Callable[[float], float]) -> list[str]:
    """The latency axis under the boxes: one tick per decade."""
    x0 = MARGIN + LABEL_W
    out = [f"<line x1='{x0}' y1='{y}' x2='{x0 + AXIS_W}' y2='{y}' stroke='#333'/>"]
    for decade in range(low, high + 1):
        x = scale(10.0**decade)
        out.append(f"<line x1='{x:.1f}' y1='{y}' x2='{x:.1f}' y2='{y + 4}' stroke='#333'/>")
        out.append(_text(x, y + 16, _duration_label(10.0**decade), "middle"))
    return out


def _boxplot(latencies: Mapping[str, Sequence[float]], top: float) -> tuple[list[str], float]:
    """One box per device: quartiles, median, whiskers to min/max, every case as a tick."""
    title = "Benchmark latency per case and device (median of repeats, log scale)"
    out = [_text(MARGIN, top + 14, title, extra=" font-weight='bold'")]
    data = {d: sorted(v for v in values if v > 0) for d, values in latencies.items()}
    data = {d: v for d, v in data.items() if v}
    y = top + 26
    if not data:
        out.append(_text(MARGIN, y + 16, "no benchmark results in this report"))
        return out, y + 26 - top
    low, high = _decades([v for values in data.values() for v in values])

    def scale(value: float) -> float:
        return MARGIN + LABEL_W + (math.log10(value) - low) / (high - low) * AXIS_W

    for device in sorted(data):
        out += _box(device, data[device], y, scale)
        y += BOX_H + 6
    out += _axis(low, high, y, scale)
    return out, y + 22 - top


def render(
    rates: Mapping[str, Mapping[str, tuple[int, int]]],
    latencies: Mapping[str, Sequence[float]],
    title: str = "hfci model coverage",
) -> str:
    """The SVG text: ``rates`` is category -> device -> (passed, total); latencies in seconds."""
    body = [_text(MARGIN, MARGIN + 8, title, extra=" font-weight='bold'", size=15)]
    heat, heat_h = _heatmap(rates, MARGIN + 18)
    box, box_h = _boxplot(latencies, MARGIN + 18 + heat_h + 16)
    height = int(MARGIN + 18 + heat_h + 16 + box_h + MARGIN)
    body += heat + box
    label = _escape(title, apostrophe=True)
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}' role='img' aria-label='{label}'>"
    )
    background = f"<rect width='{WIDTH}' height='{height}' fill='white'/>"
    return "\n".join([head, background, *body, "</svg>"]) + "\n"


def write(
    path: Path,
    rates: Mapping[str, Mapping[str, tuple[int, int]]],
    latencies: Mapping[str, Sequence[float]],
    title: str = "hfci model coverage",
) -> Path:
    """Write :func:`render`'s SVG to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(rates, latencies, title), encoding="utf-8")
    return path
