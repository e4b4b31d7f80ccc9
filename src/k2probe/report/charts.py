"""Charts as inline SVG, drawn here so the report opens offline: every chart has axes, ticks and units. Every label
(route names, task ids) passes `untrusted.html` (escaped, control characters visible)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from k2probe.core.results import Outcome
from k2probe.core.untrusted import html as escape

WIDTH, BAR_H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 18, 170, 30, 26, 42
COLORS: dict[str, str] = {Outcome.PASSED: "#2e7d32", Outcome.FAILED: "#c62828", Outcome.ERROR: "#f9a825",
                          Outcome.PENDING: "#9e9e9e"}


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


@dataclass
class Bar:
    label: str
    parts: list[tuple[str, float]]  # (series name, value): stacked left to right
    note: str = ""


def _x_axis(left: float, plot_w: float, top: float, base_y: float, height: float, ticks: list[float], span: float,
            label: str, grid: str) -> str:
    """A horizontal chart's x axis: a grid line and a number at each tick, the axis lines, the label with its unit."""
    out = []
    for tick in ticks:
        x = left + plot_w * tick / span
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{base_y}" stroke="{grid}"/>'
                   f'<text x="{x:.1f}" y="{base_y + 14}" font-size="10" text-anchor="middle">{_fmt(tick)}</text>')
    out.append(f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}" stroke="#333"/>'
               f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base_y}" stroke="#333"/>'
               f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="11" text-anchor="middle">'
               f'{escape(label)}</text>')
    return "".join(out)


def hbar(title: str, bars: list[Bar], x_label: str) -> str:
    """Horizontal (stacked) bars, one row per label, with an x axis in `x_label`'s units."""
    top = max((sum(v for _, v in b.parts) for b in bars), default=0.0)
    ticks = _ticks(top)
    span = ticks[-1] or 1.0
    plot_w = WIDTH - PAD_L - PAD_R - (170 if any(b.note for b in bars) else 0)  # room for the notes
    height = PAD_T + len(bars) * (BAR_H + 6) + PAD_B
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}"><title>{escape(title)}</title>',
           f'<text x="{PAD_L}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    base_y = PAD_T + len(bars) * (BAR_H + 6)
    out.append(_x_axis(PAD_L, plot_w, PAD_T - 4, base_y, height, ticks, span, x_label, "#ddd"))
    for row, bar in enumerate(bars):
        y = PAD_T + row * (BAR_H + 6)
        out.append(f'<text x="{PAD_L - 6}" y="{y + BAR_H - 5}" font-size="11" text-anchor="end">'
                   f'{escape(bar.label[:28])}</text>')
        x = float(PAD_L)
        for series, value in bar.parts:
            w = plot_w * value / span
            if w > 0:
                color = COLORS.get(series, "#1565c0")
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{color}">'
                           f'<title>{escape(bar.label)}: {escape(series)} {_fmt(value)}</title></rect>')
            x += w
        if bar.note:
            out.append(f'<text x="{x + 4:.1f}" y="{y + BAR_H - 5}" font-size="10">{escape(bar.note)}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(title: str, values: list[float], x_label: str, bins: int = 12) -> str:
    """A histogram of `values` (e.g. latencies in ms): x in `x_label`'s units, y the count, n in the title."""
    height, plot_h = 240, 150
    plot_w = WIDTH - 60 - PAD_R
    left = 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}"><title>{escape(title)}</title>',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)} (n={len(values)})</text>']
    if not values:
        out.append(f'<text x="{left}" y="80" font-size="12">no answered calls</text></svg>')
        return "".join(out)
    lo, hi = 0.0, max(values)
    xticks = _ticks(hi)
    span = xticks[-1] or 1.0
    width = span / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v / width))] += 1
    yticks = _ticks(max(counts))
    ytop = yticks[-1] or 1.0
    base = 26 + plot_h
    for tick in yticks:
        y = base - plot_h * tick / ytop
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{_fmt(tick)}</text>')
    for i, count in enumerate(counts):
        x = left + plot_w * (lo + i * width) / span
        h = plot_h * count / ytop
        out.append(f'<rect x="{x + 1:.1f}" y="{base - h:.1f}" width="{plot_w / bins - 2:.1f}" height="{h:.1f}" '
                   f'fill="#1565c0"><title>{_fmt(i * width)}–{_fmt((i + 1) * width)} {escape(x_label)}: '
                   f'{count}</title></rect>')
    for tick in xticks:
        x = left + plot_w * tick / span
        out.append(f'<text x="{x:.1f}" y="{base + 14}" font-size="10" text-anchor="middle">{_fmt(tick)}</text>')
    out.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#333"/>'
               f'<line x1="{left}" y1="26" x2="{left}" y2="{base}" stroke="#333"/>'
               f'<text x="{left + plot_w / 2:.1f}" y="{height - 14}" font-size="11" text-anchor="middle">'
               f'{escape(x_label)}</text>'
               f'<text x="14" y="{26 + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {26 + plot_h / 2:.1f})">calls</text></svg>')
    return "".join(out)


SERIES_COLORS = ("#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00")


def line_chart(title: str, xs: list[float], series: dict[str, list[float | None]], x_label: str, y_label: str) -> str:
    """Lines over the steps of a sweep (x: concurrency or rate), one per series, with axes, ticks, units, a legend."""
    width, height, left, right, top, bottom = WIDTH, 280, 64, 150, 28, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for ys in series.values() for v in ys if v is not None]
    yticks = _ticks(max(values, default=0.0))
    ytop = yticks[-1] or 1.0
    xticks = _ticks(max(xs, default=0.0))
    xspan = xticks[-1] or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']

    def px(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * x / xspan, top + plot_h - plot_h * y / ytop

    for tick in yticks:
        _, y = px(0, tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{_fmt(tick)}</text>')
    for tick in xticks:
        x, _ = px(tick, 0)
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle">'
                   f'{_fmt(tick)}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>'
               f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>'
               f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" font-size="11" text-anchor="middle">'
               f'{escape(x_label)}</text><text x="14" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{escape(y_label)}</text>')
    for index, (name, ys) in enumerate(series.items()):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        points = [px(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        ly = top + 14 * index + 6
        out.append(f'<rect x="{left + plot_w + 12}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + plot_w + 26}" y="{ly + 1}" font-size="11">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


CALL_COLORS = {"ok": "#8ab4f8", "expected": "#b0bec5", "error": "#e57373"}
CALL_KINDS = {"ok": "answered", "expected": "refused as the check expected (a passed check)", "error": "failed"}
CHAR_W = 6.2  # an 11px sans-serif character, about: labels are cut to their column, never drawn over the bars


@dataclass
class CallBar:
    label: str
    latency_ms: float
    ttft_ms: float | None
    kind: str  # ok | expected | error
    note: str = ""


def _fit(text: str, width: float) -> str:
    most = max(4, int(width / CHAR_W))
    return text if len(text) <= most else text[: most - 1] + "…"


def call_bars(title: str, bars: list[CallBar]) -> str:
    """One bar per call (end-to-end latency, a mark at the time to first token) on an x axis in milliseconds: labels
    in a column of their own (cut with … to fit, whole in the tooltip), notes in a column right of the plot, colours
    by kind with a legend — a refusal the check expected is not drawn as a failure."""
    label_w, note_w, row_h, top = 300, 190, 22, 44
    plot_w = WIDTH + 260 - label_w - note_w - PAD_R
    ticks = _ticks(max((b.latency_ms for b in bars), default=0.0))
    span = ticks[-1] or 1.0
    base_y = top + len(bars) * row_h
    height = base_y + 46
    width = label_w + plot_w + note_w + PAD_R
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
           f'<text x="0" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    x = 0.0
    for kind in ("ok", "expected", "error"):
        if any(b.kind == kind for b in bars):
            out.append(f'<rect x="{x:.0f}" y="24" width="10" height="10" fill="{CALL_COLORS[kind]}"/>'
                       f'<text x="{x + 14:.0f}" y="33" font-size="11">{escape(CALL_KINDS[kind])}</text>')
            x += 24 + CHAR_W * len(CALL_KINDS[kind])
    out.append(_x_axis(label_w, plot_w, top - 2, base_y, height, ticks, span,
                       "milliseconds (bar: end-to-end latency; mark: time to first token)", "#eee"))
    for row, bar in enumerate(bars):
        y = top + row * row_h
        w = plot_w * bar.latency_ms / span
        out.append(f'<g><title>{escape(bar.label)}: {bar.latency_ms:.1f} ms{" — " + escape(bar.note) if bar.note else ""}'
                   f'</title><text x="{label_w - 6}" y="{y + 15}" font-size="11" text-anchor="end">'
                   f'{escape(_fit(bar.label, label_w - 10))}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1.0):.1f}" height="16" '
                   f'fill="{CALL_COLORS.get(bar.kind, CALL_COLORS["ok"])}"/>')
        if bar.ttft_ms is not None:
            out.append(f'<rect x="{label_w + plot_w * bar.ttft_ms / span:.1f}" y="{y + 1}" width="2" height="20" '
                       f'fill="#1a237e"/>')
        note = f"{bar.latency_ms:.0f} ms" + (f" ({bar.note})" if bar.note else "")
        out.append(f'<text x="{label_w + plot_w + 6}" y="{y + 15}" font-size="11">'
                   f'{escape(_fit(note, note_w - 6))}</text></g>')
    out.append("</svg>")
    return "".join(out)
