"""Geometry of the small SVG bar charts of the Usage tab (drawn by templates/partials/charts.html).

No chart library: the numbers are turned into rectangles here, the template writes the SVG, and
every chart also carries its data as a table for screen readers and for copying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    display: str
    x: float
    y: float
    width: float
    height: float
    show_label: bool = True


@dataclass(frozen=True)
class Tick:
    value: float
    display: str
    pos: float


@dataclass
class BarChart:
    title: str
    width: int
    height: int
    orientation: str  # "vertical" (columns) or "horizontal" (rows)
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    plot_left: float = 0
    plot_top: float = 0
    plot_right: float = 0
    plot_bottom: float = 0
    unit: str = ""

    @property
    def empty(self) -> bool:
        return not self.bars or all(bar.value == 0 for bar in self.bars)


def nice_ceiling(value: float) -> float:
    """Smallest 1/2/2.5/5 x 10^n not below ``value`` (axis maximum)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value - 1e-9:
            return float(candidate)
    return float(10 ** (exponent + 1))


def axis_ticks(maximum: float) -> list[float]:
    """Tick values from 0 to ``maximum`` (a nice_ceiling) at a 1, 2 or 5 x 10^n step: a quarter of
    10 would be 2.5, which no whole-number label shows truly."""
    if maximum <= 0:
        return [0.0]
    mantissa = maximum / 10 ** math.floor(math.log10(maximum))
    intervals = 4 if math.isclose(mantissa, 2.0) else 5
    step = maximum / intervals
    return [round(step * i, 12) for i in range(intervals + 1)]


def tick_decimals(values: list[float]) -> int:
    """The fewest decimals (up to 6) that print every value exactly."""
    for decimals in range(7):
        if all(math.isclose(round(v, decimals), v, rel_tol=1e-9, abs_tol=1e-12) for v in values):
            return decimals
    return 6


def _fmt(value: float, decimals: int) -> str:
    if decimals == 0:
        return f"{value:,.0f}"
    return f"{value:,.{decimals}f}"


def value_ticks(maximum: float, top: float, plot_h: float) -> list[Tick]:
    """The value axis of a column chart: axis_ticks up to ``maximum``, printed with the fewest
    decimals that show them exactly, placed from the plot's bottom (``top + plot_h``) up."""
    ticks = axis_ticks(maximum)
    decimals = tick_decimals(ticks)
    return [Tick(t, _fmt(t, decimals), round(top + plot_h - plot_h * t / maximum, 2)) for t in ticks]


def vertical_bars(title: str, items: list[tuple[str, float]], *, unit: str = "", decimals: int = 1,
                  width: int = 640, height: int = 240, label_every: int | None = None) -> BarChart:
    """Columns, one per item (e.g. GPU-hours per day); x labels thinned to stay legible."""
    left, right, top, bottom = 44.0, 10.0, 14.0, 28.0
    chart = BarChart(title=title, width=width, height=height, orientation="vertical", unit=unit,
                     plot_left=left, plot_top=top, plot_right=width - right, plot_bottom=height - bottom)
    if not items:
        return chart
    maximum = nice_ceiling(max(value for _, value in items))
    plot_w = width - left - right
    plot_h = height - top - bottom
    slot = plot_w / len(items)
    bar_w = max(2.0, slot * 0.72)
    every = label_every or max(1, math.ceil(len(items) / 10))
    for index, (label, value) in enumerate(items):
        h = plot_h * (value / maximum) if maximum else 0
        chart.bars.append(Bar(
            label=label, value=value, display=_fmt(value, decimals),
            x=round(left + index * slot + (slot - bar_w) / 2, 2), y=round(top + plot_h - h, 2),
            width=round(bar_w, 2), height=round(h, 2),
            show_label=(len(items) - 1 - index) % every == 0,
        ))
    chart.ticks = value_ticks(maximum, top, plot_h)
    return chart


def horizontal_bars(title: str, items: list[tuple[str, float]], *, unit: str = "", decimals: int = 0,
                    width: int = 640, row_height: int = 30, label_width: float = 150) -> BarChart:
    """Rows, one per item (e.g. cost by department), largest first, value printed after the bar."""
    items = sorted(items, key=lambda item: item[1], reverse=True)
    top, bottom, right = 8.0, 8.0, 90.0
    height = int(top + bottom + row_height * max(1, len(items)))
    chart = BarChart(title=title, width=width, height=height, orientation="horizontal", unit=unit,
                     plot_left=label_width, plot_top=top, plot_right=width - right, plot_bottom=height - bottom)
    if not items:
        return chart
    maximum = max(value for _, value in items) or 1.0
    plot_w = width - label_width - right
    for index, (label, value) in enumerate(items):
        w = plot_w * (value / maximum)
        chart.bars.append(Bar(
            label=label, value=value, display=_fmt(value, decimals),
            x=label_width, y=top + index * row_height + row_height * 0.18,
            width=round(max(w, 1.0 if value > 0 else 0.0), 2), height=round(row_height * 0.64, 2),
        ))
    return chart


# --- stacked columns (cost by department per month) ------------------------------------------------
@dataclass(frozen=True)
class Segment(Bar):
    """A Bar whose label is its column, stacked with the column's other series."""

    series: int = 0  # index into StackedChart.series (its colour)

    @property
    def column(self) -> str:
        return self.label


@dataclass
class StackedChart:
    title: str
    width: int
    height: int
    unit: str
    columns: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    totals: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # the data table: series x columns, displayed
    segments: list[Segment] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[Tick] = field(default_factory=list)  # column labels: value = index, pos = centre x
    plot_left: float = 0
    plot_top: float = 0
    plot_right: float = 0
    plot_bottom: float = 0

    @property
    def empty(self) -> bool:
        return not self.segments


def stacked_bars(title: str, columns: list[str], series: list[tuple[str, list[float]]], *, unit: str = "",
                 decimals: int = 0, width: int = 640, height: int = 260) -> StackedChart:
    """Columns (e.g. months) each stacking one segment per series (e.g. department) in series order;
    zero segments are left out; the axis reaches the tallest column's total."""
    left, right, top, bottom = 52.0, 10.0, 14.0, 28.0
    chart = StackedChart(title=title, width=width, height=height, unit=unit, columns=list(columns),
                         series=[name for name, _ in series], plot_left=left, plot_top=top,
                         plot_right=width - right, plot_bottom=height - bottom)
    totals = [sum(values[i] for _, values in series) for i in range(len(columns))]
    chart.totals = [_fmt(total, decimals) for total in totals]
    chart.rows = [[_fmt(v, decimals) for v in values] for _, values in series]
    if not columns or not any(total > 0 for total in totals):
        return chart
    maximum = nice_ceiling(max(totals))
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(columns)
    bar_w = max(2.0, slot * 0.6)
    for i, column in enumerate(columns):
        x = round(left + i * slot + (slot - bar_w) / 2, 2)
        base = 0.0
        for index, (_name, values) in enumerate(series):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / maximum
            chart.segments.append(Segment(label=column, series=index, value=value, display=_fmt(value, decimals),
                                          x=x, y=round(top + plot_h - base - h, 2), width=round(bar_w, 2),
                                          height=round(h, 2)))
            base += h
        chart.labels.append(Tick(float(i), column, round(left + i * slot + slot / 2, 2)))
    chart.ticks = value_ticks(maximum, top, plot_h)
    return chart


# --- session timeline -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """One session drawn on its lane: ``x``/``width`` in the SVG's units."""

    pod: str
    label: str  # the tooltip: pod, times, resources, cost
    gpu: bool
    running: bool
    x: float
    width: float


@dataclass
class Lane:
    key: str
    y: float
    spans: list[Span] = field(default_factory=list)


@dataclass
class Timeline:
    width: int
    height: int
    plot_left: float
    plot_right: float
    lane_height: float
    lanes: list[Lane] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)

    @property
    def spans(self) -> int:
        return sum(len(lane.spans) for lane in self.lanes)


def timeline(sessions: list[tuple[str, str, str, bool, bool, float, float]], lo: float, hi: float,
             ticks: list[tuple[float, str]], *, width: int = 1100, label_width: float = 150,
             lane_height: float = 22) -> Timeline:
    """Lanes (one per key, sorted) of sessions over the window ``[lo, hi)`` (Unix seconds):
    ``sessions`` are (key, pod, tooltip, gpu, running, start, end); spans are clipped to the window
    and at least 2 units wide so a short session stays visible; ``ticks`` are (time, label)."""
    top, bottom = 24.0, 8.0
    left, right = label_width, width - 12.0
    keys = sorted({s[0] for s in sessions})
    chart = Timeline(width=width, height=int(top + bottom + lane_height * max(1, len(keys))),
                     plot_left=left, plot_right=right, lane_height=lane_height)
    scale = (right - left) / (hi - lo) if hi > lo else 0.0
    lanes = {key: Lane(key=key, y=top + i * lane_height) for i, key in enumerate(keys)}
    for key, pod, label, gpu, running, start, end in sorted(sessions, key=lambda s: (s[0], s[5], s[1])):
        a, b = max(start, lo), min(end, hi)
        if b <= a:
            continue
        x = left + (a - lo) * scale
        lanes[key].spans.append(Span(pod=pod, label=label, gpu=gpu, running=running, x=round(x, 2),
                                     width=round(max(2.0, (b - a) * scale), 2)))
    chart.lanes = [lanes[key] for key in keys]
    chart.ticks = [Tick(value=t, display=text, pos=round(left + (t - lo) * scale, 2))
                   for t, text in ticks if lo <= t <= hi]
    return chart
