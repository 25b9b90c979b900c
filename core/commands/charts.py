"""Inline SVG charts for the evidence pack: views of recorded numbers, drawn without a script.

Every chart is a ``<figure class="chart" data-chart="KIND">`` holding one ``<svg>``. The SVG
uses classes and presentation attributes only — no ``style`` attribute, no script — so the
web view can serve the same markup under its strict Content-Security-Policy; the colours live
in the report's style sheet (``assay.commands.report.CSS``). Each data point is a ``<circle>`` (curves,
scatter) or a ``<rect class="bar">`` (bars, cells) with a ``<title>`` tooltip giving its value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

W, H = 560, 330
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 34, 46


def fmt(value: Any, digits: int = 4) -> str:
    """A number at its precision: ints with separators, floats to ``digits`` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) < 1e-12:  # float noise around zero (a gap of -1.1e-16)
            return "0"
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        if abs(value) < 10 ** -(digits - 1) * 0.1:
            return f"{value:.{digits - 1}e}"
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
        text = f"{value:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _n(v: float) -> str:
    return f"{v:.1f}"


@dataclass
class Series:
    """One line or set of points: ``xs``/``ys`` with a CSS class (``s0`` .. ``s5``, or a name)."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    cls: str = "s0"
    line: bool = True
    labels: Sequence[str] = field(default_factory=list)


@dataclass
class Axis:
    lo: float
    hi: float
    label: str = ""

    def ticks(self, n: int = 5) -> list[float]:
        span = self.hi - self.lo
        if span <= 0:
            return [self.lo]
        raw = span / n
        step = 10 ** math.floor(math.log10(raw))
        for m in (1, 2, 2.5, 5, 10):
            if raw <= m * step:
                step *= m
                break
        first = math.ceil(self.lo / step - 1e-9) * step
        out, t = [], first
        while t <= self.hi + 1e-9 * step:
            out.append(round(t, 12))
            t += step
        return out


def padded(values: Sequence[float | None], lo: float | None = None, hi: float | None = None) -> Axis:
    """An axis spanning ``values`` (and ``lo``/``hi`` when given) with a 5 % margin."""
    found = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    a = min(found) if found else 0.0
    b = max(found) if found else 1.0
    a = min(a, lo) if lo is not None else a
    b = max(b, hi) if hi is not None else b
    if b - a < 1e-12:
        a, b = (a, a + 1.0) if lo is not None and a >= lo else (a - 0.5, b + 0.5)
    m = (b - a) * 0.05
    return Axis(a - m if lo is None or a < lo else a, b + m if hi is None or b > hi else b)


class Plot:
    """A plotting area in an SVG of ``W`` × ``H`` user units with x and y axes."""

    def __init__(self, x: Axis, y: Axis, width: int = W, height: int = H, pad_l: int = PAD_L) -> None:
        self.x, self.y, self.w, self.h, self.pad_l = x, y, width, height, pad_l
        self.parts: list[str] = []

    @property
    def plot_w(self) -> float:
        return self.w - self.pad_l - PAD_R

    @property
    def plot_h(self) -> float:
        return self.h - PAD_T - PAD_B

    def px(self, v: float) -> float:
        return self.pad_l + self.plot_w * (v - self.x.lo) / (self.x.hi - self.x.lo)

    def py(self, v: float) -> float:
        return PAD_T + self.plot_h * (1 - (v - self.y.lo) / (self.y.hi - self.y.lo))

    def frame(self, x_ticks: bool = True) -> None:
        p = self.parts
        p.append(f'<rect class="frame" x="{self.pad_l}" y="{PAD_T}" width="{_n(self.plot_w)}" height="{_n(self.plot_h)}"/>')
        for t in self.y.ticks():
            y = self.py(t)
            p.append(f'<line class="grid" x1="{self.pad_l}" x2="{_n(self.pad_l + self.plot_w)}" y1="{_n(y)}" y2="{_n(y)}"/>')
            p.append(f'<text class="tick" x="{self.pad_l - 5}" y="{_n(y + 4)}" text-anchor="end">{escape(fmt(t, 3))}</text>')
        if x_ticks:
            for t in self.x.ticks():
                x = self.px(t)
                p.append(f'<text class="tick" x="{_n(x)}" y="{_n(PAD_T + self.plot_h + 15)}" text-anchor="middle">'
                         f"{escape(fmt(t, 3))}</text>")
        if self.x.label:
            p.append(f'<text class="axis-label" x="{_n(self.pad_l + self.plot_w / 2)}" y="{self.h - 8}" '
                     f'text-anchor="middle">{escape(self.x.label)}</text>')
        if self.y.label:
            p.append(f'<text class="axis-label" x="14" y="{_n(PAD_T + self.plot_h / 2)}" text-anchor="middle" '
                     f'transform="rotate(-90 14 {_n(PAD_T + self.plot_h / 2)})">{escape(self.y.label)}</text>')

    def hline(self, value: float, label: str, cls: str = "ref") -> None:
        if not self.y.lo <= value <= self.y.hi:
            return
        y = self.py(value)
        self.parts.append(f'<line class="{cls}" x1="{self.pad_l}" x2="{_n(self.pad_l + self.plot_w)}" '
                          f'y1="{_n(y)}" y2="{_n(y)}"><title>{escape(label)}</title></line>')
        self.parts.append(f'<text class="ref-label t-{cls}" x="{_n(self.pad_l + self.plot_w - 4)}" y="{_n(y - 4)}" '
                          f'text-anchor="end">{escape(label)}</text>')

    def hband(self, lo: float, hi: float, label: str, cls: str = "band") -> None:
        lo, hi = max(lo, self.y.lo), min(hi, self.y.hi)
        if hi <= lo:
            return
        self.parts.append(f'<rect class="{cls}" x="{self.pad_l}" y="{_n(self.py(hi))}" width="{_n(self.plot_w)}" '
                          f'height="{_n(self.py(lo) - self.py(hi))}"><title>{escape(label)}</title></rect>')

    def series(self, s: Series) -> None:
        pts = [(float(x), float(y)) for x, y in zip(s.xs, s.ys, strict=False) if y is not None]
        if s.line and len(pts) > 1:
            coords = " ".join(f"{_n(self.px(x))},{_n(self.py(y))}" for x, y in pts)
            self.parts.append(f'<polyline class="line {s.cls}" points="{coords}"/>')
        for i, (x, y) in enumerate(pts):
            tip = s.labels[i] if i < len(s.labels) else f"{s.name}: {fmt(x, 3)}, {fmt(y, 3)}"
            self.parts.append(f'<circle class="pt {s.cls}" cx="{_n(self.px(x))}" cy="{_n(self.py(y))}" '
                              f'r="{2.2 if s.line else 3}"><title>{escape(tip)}</title></circle>')

    def svg(self, title: str) -> str:
        return (f'<svg class="plot" viewBox="0 0 {self.w} {self.h}" role="img" aria-label="{escape(title)}" '
                f'xmlns="http://www.w3.org/2000/svg">{"".join(self.parts)}</svg>')


def legend(items: Sequence[tuple[str, str]]) -> str:
    spans = "".join(f'<span class="key"><svg class="swatch" viewBox="0 0 12 12" width="12" height="12">'
                    f'<rect class="sw {cls}" width="12" height="12"/></svg>{escape(name)}</span>' for name, cls in items)
    return f'<div class="legend">{spans}</div>'


def figure(kind: str, title: str, svg: str, caption: str = "", keys: Sequence[tuple[str, str]] = (),
           extra: str = "") -> str:
    cap = f'<p class="caption">{escape(caption)}</p>' if caption else ""
    return (f'<figure class="chart" data-chart="{escape(kind)}"{extra}><figcaption>{escape(title)}</figcaption>'
            f"{legend(keys) if keys else ''}{svg}{cap}</figure>")


def finish(p: Plot, kind: str, title: str, series: Sequence[Series], refs: Sequence[tuple[float, str]],
           caption: str) -> str:
    """Draw the reference lines and the series on ``p`` and wrap it as a figure (a legend for several series)."""
    for value, label in refs:
        p.hline(value, label)
    for s in series:
        p.series(s)
    keys = [(s.name, s.cls) for s in series] if len(series) > 1 else []
    return figure(kind, title, p.svg(title), caption, keys)


def line_chart(kind: str, title: str, series: Sequence[Series], x: Axis, y: Axis, *, diagonal: bool = False,
               refs: Sequence[tuple[float, str]] = (), caption: str = "") -> str:
    p = Plot(x, y)
    p.frame()
    if diagonal:
        p.parts.append(f'<line class="diag" x1="{_n(p.px(x.lo))}" y1="{_n(p.py(y.lo))}" x2="{_n(p.px(x.hi))}" '
                       f'y2="{_n(p.py(y.hi))}"/>')
    return finish(p, kind, title, series, refs, caption)


@dataclass
class Bar:
    """One bar of a horizontal bar chart: value with an optional interval, in a CSS class."""

    label: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    cls: str = "s0"
    note: str = ""


def bar_chart(kind: str, title: str, rows: Sequence[tuple[str, Sequence[Bar]]], *, axis: Axis | None = None,
              refs: Sequence[tuple[float, str, str]] = (), bands: Sequence[tuple[float, float, str, str]] = (),
              keys: Sequence[tuple[str, str]] = (), caption: str = "", x_label: str = "") -> str:
    """Horizontal bars grouped by row label; ``refs`` are vertical lines, ``bands`` shaded x-ranges."""
    values: list[float | None] = [v for _, group in rows for one in group for v in (one.value, one.lo, one.hi)]
    values += [v for v, _, _ in refs] + [v for lo, hi, _, _ in bands for v in (lo, hi)]
    ax = axis or padded(values, lo=0.0 if all(v is None or v >= 0 for v in values) else None)
    ax.label = x_label or ax.label
    per = max(1, max((len(bars) for _, bars in rows), default=1))
    bar_h = 12 if per > 1 else 16
    row_h = per * bar_h + 10
    label_w = int(min(260, max(80, 6.4 * max((len(label) for label, _ in rows), default=8) + 14)))
    height = PAD_T + PAD_B + row_h * max(1, len(rows))
    p = Plot(ax, Axis(0, 1), height=height, pad_l=label_w)
    parts = p.parts
    parts.append(f'<rect class="frame" x="{label_w}" y="{PAD_T}" width="{_n(p.plot_w)}" height="{_n(p.plot_h)}"/>')
    for t in ax.ticks():
        x = p.px(t)
        parts.append(f'<line class="grid" x1="{_n(x)}" x2="{_n(x)}" y1="{PAD_T}" y2="{_n(PAD_T + p.plot_h)}"/>')
        parts.append(f'<text class="tick" x="{_n(x)}" y="{_n(PAD_T + p.plot_h + 15)}" text-anchor="middle">'
                     f"{escape(fmt(t, 3))}</text>")
    for lo, hi, label, cls in bands:
        left, right = p.px(max(lo, ax.lo)), p.px(min(hi, ax.hi))
        if right > left:
            parts.append(f'<rect class="{cls}" x="{_n(left)}" y="{PAD_T}" width="{_n(right - left)}" height="{_n(p.plot_h)}">'
                         f"<title>{escape(label)}</title></rect>")
    zero = p.px(max(ax.lo, min(0.0, ax.hi)))
    for r, (label, bars) in enumerate(rows):
        top = PAD_T + r * row_h + 5
        parts.append(f'<text class="row-label" x="{label_w - 6}" y="{_n(top + per * bar_h / 2 + 4)}" '
                     f'text-anchor="end">{escape(label)}</text>')
        for i, b in enumerate(bars):
            y = top + i * bar_h
            if b.value is None:
                parts.append(f'<text class="na" x="{label_w + 4}" y="{_n(y + bar_h - 3)}">'
                             f"{escape(b.label)}: not computed</text>")
                continue
            x = p.px(b.value)
            a, w = min(zero, x), abs(x - zero)
            tip = f"{label} · {b.label}: {fmt(b.value)}"
            if b.lo is not None and b.hi is not None:
                tip += f" (95% interval {fmt(b.lo)} to {fmt(b.hi)})"
            if b.note:
                tip += f" — {b.note}"
            parts.append(f'<rect class="bar {b.cls}" x="{_n(a)}" y="{_n(y)}" width="{_n(max(w, 1.0))}" '
                         f'height="{bar_h - 3}"><title>{escape(tip)}</title></rect>')
            if b.lo is not None and b.hi is not None:
                ym = y + (bar_h - 3) / 2
                parts.append(f'<line class="whisker" x1="{_n(p.px(b.lo))}" x2="{_n(p.px(b.hi))}" y1="{_n(ym)}" '
                             f'y2="{_n(ym)}"/><line class="whisker" x1="{_n(p.px(b.lo))}" x2="{_n(p.px(b.lo))}" '
                             f'y1="{_n(ym - 4)}" y2="{_n(ym + 4)}"/><line class="whisker" x1="{_n(p.px(b.hi))}" '
                             f'x2="{_n(p.px(b.hi))}" y1="{_n(ym - 4)}" y2="{_n(ym + 4)}"/>')
            end = max(x, p.px(b.hi) if b.hi is not None else x)
            outside = end < p.pad_l + p.plot_w - 44
            anchor, tx, where = ("start", end + 4, "value") if outside else ("end", max(x, zero) - 4, "value inside")
            if b.value < 0:  # a bar growing left of zero: its number before it, or inside when there is no room
                start = min(x, p.px(b.lo) if b.lo is not None else x)
                anchor, tx, where = ("end", start - 4, "value") if start - label_w > 44 else ("start", x + 4,
                                                                                           "value inside")
            parts.append(f'<text class="{where}" x="{_n(tx)}" y="{_n(y + bar_h - 5)}" text-anchor="{anchor}">'
                         f"{escape(fmt(b.value))}</text>")
    for value, label, cls in refs:
        if ax.lo <= value <= ax.hi:
            x = p.px(value)
            parts.append(f'<line class="{cls}" x1="{_n(x)}" x2="{_n(x)}" y1="{PAD_T - 4}" y2="{_n(PAD_T + p.plot_h)}">'
                         f"<title>{escape(label)}</title></line>")
            parts.append(f'<text class="ref-label t-{cls}" x="{_n(x)}" y="{PAD_T - 8}" text-anchor="middle">'
                         f"{escape(label)}</text>")
    if ax.label:
        parts.append(f'<text class="axis-label" x="{_n(label_w + p.plot_w / 2)}" y="{height - 8}" '
                     f'text-anchor="middle">{escape(ax.label)}</text>')
    return figure(kind, title, p.svg(title), caption, keys)


def heatmap(kind: str, title: str, labels: Sequence[str], matrix: Sequence[Sequence[int]], caption: str = "") -> str:
    """A confusion matrix: rows are the true class, columns the predicted one; cells shaded by row share."""
    n = max(1, len(labels))
    top = 60
    cell = max(18, min(56, int((W - 180) / n)))
    label_w = int((W - cell * n) / 2) + 20
    width, height = W, top + cell * n + 20
    parts = []
    for j, name in enumerate(labels):
        x = label_w + j * cell + cell / 2
        parts.append(f'<text class="tick" x="{_n(x)}" y="{top - 8}" text-anchor="middle">{escape(name[:14])}</text>')
    parts.append(f'<text class="axis-label" x="{_n(label_w + cell * n / 2)}" y="{top - 28}" text-anchor="middle">'
                 "predicted</text>")
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        y = top + i * cell
        parts.append(f'<text class="row-label" x="{label_w - 6}" y="{_n(y + cell / 2 + 4)}" text-anchor="end">'
                     f"{escape(labels[i][:16] if i < len(labels) else '')}</text>")
        for j, count in enumerate(row):
            share = count / total
            level = min(9, int(share * 10))
            correct = " diag-cell" if i == j else ""
            parts.append(f'<rect class="bar cell heat{level}{correct}" x="{label_w + j * cell}" y="{y}" width="{cell - 2}" '
                         f'height="{cell - 2}"><title>true {escape(labels[i])}, predicted {escape(labels[j])}: '
                         f"{count:,} ({fmt(share * 100, 3)}% of the row)</title></rect>")
            parts.append(f'<text class="cell-text{" light" if level >= 6 else ""}" x="{label_w + j * cell + cell / 2 - 1}" '
                         f'y="{_n(y + cell / 2 + 4)}" text-anchor="middle">{count:,}</text>')
    parts.append(f'<text class="axis-label" x="12" y="{_n(top + cell * n / 2)}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {_n(top + cell * n / 2)})">true</text>')
    svg = (f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')
    return figure(kind, title, svg, caption)


def histogram(kind: str, title: str, edges: Sequence[float], counts: Sequence[int], x_label: str,
              refs: Sequence[tuple[float, str]] = (), caption: str = "") -> str:
    x = Axis(float(edges[0]), float(edges[-1]), x_label) if edges else Axis(0, 1, x_label)
    if x.hi <= x.lo:
        x = Axis(x.lo - 0.5, x.hi + 0.5, x_label)
    y = Axis(0, max([*counts, 1]) * 1.08, "count")
    p = Plot(x, y)
    p.frame()
    for a, b, c in zip(edges, edges[1:], counts, strict=False):
        x0, x1 = p.px(a), p.px(b)
        p.parts.append(f'<rect class="bar s0" x="{_n(x0)}" y="{_n(p.py(c))}" width="{_n(max(x1 - x0 - 1, 0.5))}" '
                       f'height="{_n(p.py(0) - p.py(c))}"><title>{escape(fmt(a, 3))} to {escape(fmt(b, 3))}: '
                       f"{c:,}</title></rect>")
    for value, label in refs:
        if x.lo <= value <= x.hi:
            xv = p.px(value)
            p.parts.append(f'<line class="ref" x1="{_n(xv)}" x2="{_n(xv)}" y1="{PAD_T}" y2="{_n(PAD_T + p.plot_h)}"/>'
                           f'<text class="ref-label t-ref" x="{_n(xv + 4)}" y="{PAD_T + 12}">{escape(label)}</text>')
    return figure(kind, title, p.svg(title), caption)


def time_chart(kind: str, title: str, series: Sequence[Series], y: Axis, labels: Sequence[str],
               refs: Sequence[tuple[float, str]] = (), caption: str = "") -> str:
    """Values per monitored batch, in ledger order; ``labels`` name each batch on the x axis."""
    n = max(len(labels), 2)
    p = Plot(Axis(-0.3, n - 0.7), y)
    p.frame(x_ticks=False)
    step = max(1, len(labels) // 8)
    for i, name in enumerate(labels):
        if i % step == 0:
            p.parts.append(f'<text class="tick" x="{_n(p.px(i))}" y="{_n(PAD_T + p.plot_h + 15)}" '
                           f'text-anchor="middle">{escape(name)}</text>')
    return finish(p, kind, title, series, refs, caption)
