"""The hand-written SVG chart: valid XML, the numbers people read, a log axis that spans the data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hfci import chart

SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_heatmap_shows_every_category_and_device_with_its_rate():
    rates = {"text": {"cpu": (61, 67), "cuda": (60, 67)}, "audio": {"cpu": (0, 6)}}
    svg = chart.render(rates, {})
    texts = _texts(svg)
    assert {"text", "audio", "cpu", "cuda"} <= set(texts)
    assert "91% (61/67)" in texts and "90% (60/67)" in texts and "0% (0/6)" in texts
    # audio has no cuda cases: a grey cell with a dash, not a made-up 0 %.
    assert "—" in texts
    assert "no benchmark results in this report" in texts


def test_rate_colour_runs_from_red_to_green():
    assert chart.rate_colour(0.0) == "#d73c50"
    assert chart.rate_colour(1.0) == "#32be50"
    assert chart.rate_colour(2.0) == chart.rate_colour(1.0)
    assert chart.rate_colour(0.5) != chart.rate_colour(0.49)


def test_latency_axis_covers_the_data_in_decades():
    latencies = {"cpu": [2e-4, 3e-3, 4e-2], "cuda": [5e-5]}
    svg = chart.render({"text": {"cpu": (1, 1)}}, latencies)
    texts = _texts(svg)
    assert "cpu (3)" in texts and "cuda (1)" in texts
    for tick in ("10 µs", "100 µs", "1 ms", "10 ms", "100 ms"):
        assert tick in texts
    assert "1 s" not in texts
    # Ticks sit left to right in increasing order.
    root = ET.fromstring(svg)
    xs = {t.text: float(t.get("x")) for t in root.iter(f"{SVG}text")}
    assert xs["10 µs"] < xs["1 ms"] < xs["100 ms"]
    assert float(root.get("width")) >= xs["100 ms"]


def test_non_positive_latencies_are_left_out_and_empty_input_says_so():
    svg = chart.render({}, {"cpu": [0.0, -1.0]})
    texts = _texts(svg)
    assert "no cases in this report" in texts
    assert "no benchmark results in this report" in texts


def test_text_is_escaped_and_the_file_is_written(tmp_path):
    path = chart.write(tmp_path / "sub" / "c.svg", {"a<b": {"cpu": (1, 2)}}, {"cpu": [1.5]}, title="x & 'y'")
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text)
    assert root.get("aria-label") == "x & 'y'"
    assert "a<b" in _texts(text)
    assert "1 s" in _texts(text)
