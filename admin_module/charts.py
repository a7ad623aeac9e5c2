"""Server-rendered SVG charts (no JavaScript): grouped bars per period."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLOURS = ("#2f6fb0", "#3a9a5b", "#d0473a", "#e0a030")


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str = "",
    width: int = 720,
    height: int = 260,
) -> str:
    """An accessible SVG: one group of bars per label, one colour per series, a legend and a y axis."""
    left, right, top, bottom = 40, 10, 28 if title else 10, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([v for _, values in series for v in values] + [0])
    scale_max = max(1, _nice(peak))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
    ]
    if title:
        parts.append(f'<text x="{left}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>')
    for i in range(5):
        value = scale_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{value:g}</text>'
        )
    n = max(1, len(labels))
    group_w = plot_w / n
    bar_w = max(1.0, group_w * 0.8 / max(1, len(series)))
    for gi, label in enumerate(labels):
        x0 = left + gi * group_w + group_w * 0.1
        for si, (name, values) in enumerate(series):
            value = values[gi] if gi < len(values) else 0
            h = plot_h * value / scale_max
            x = x0 + si * bar_w
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[si % len(COLOURS)]}">'
                f"<title>{escape(name)} {escape(label)}: {value:g}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{top + plot_h + 14}" font-size="11" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    lx = left
    for si, (name, _) in enumerate(series):
        parts.append(
            f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{COLOURS[si % len(COLOURS)]}"/>'
            f'<text x="{lx + 14}" y="{height - 5}" font-size="11">{escape(name)}</text>'
        )
        lx += 18 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _nice(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= value."""
    if value <= 0:
        return 1
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude
