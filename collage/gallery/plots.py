"""Inline SVG bar charts for the summary panel (no plotting library, no script: plain markup)."""

from __future__ import annotations

import math
from collections import Counter
from html import escape

BAR_COLOUR = "#4a7bd0"
TEXT_STYLE = 'font-family="system-ui, sans-serif" font-size="11" fill="#222"'


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart(title: str, items: list[tuple[str, float]], width: int = 360, bar_height: int = 14,
              colour: str = BAR_COLOUR, chart_class: str = "") -> str:
    """Horizontal bars, one per (label, value), the value written at the bar's end."""
    label_width, value_width, gap = 130, 56, 4
    top = 18
    height = top + max(1, len(items)) * (bar_height + gap) + 2
    largest = max((v for _, v in items), default=0) or 1
    span = width - label_width - value_width
    parts = [f'<svg class="chart {escape(chart_class)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="0" y="12" {TEXT_STYLE} font-weight="600">{escape(title)}</text>']
    if not items:
        parts.append(f'<text x="0" y="{top + 11}" {TEXT_STYLE} fill="#888">none</text>')
    for row, (label, value) in enumerate(items):
        y = top + row * (bar_height + gap)
        length = span * value / largest
        parts.append(f'<text x="{label_width - 4}" y="{y + bar_height - 3}" text-anchor="end" {TEXT_STYLE}>'
                     f'{escape(str(label))}</text>')
        parts.append(f'<rect class="bar" x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" '
                     f'fill="{colour}" data-label="{escape(str(label))}" data-value="{value}"><title>{escape(str(label))}: '
                     f'{_number(value)}</title></rect>')
        parts.append(f'<text x="{label_width + length + 3:.1f}" y="{y + bar_height - 3}" {TEXT_STYLE}>{_number(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(title: str, items: list[tuple[str, float]], width: int = 360, height: int = 130,
                 colour: str = BAR_COLOUR, chart_class: str = "") -> str:
    """Vertical bars (a histogram): labels under the bars, counts above the non-empty ones."""
    top, bottom = 30, 20
    plot_height = height - top - bottom
    slot = width / max(1, len(items))
    largest = max((v for _, v in items), default=0) or 1
    parts = [f'<svg class="chart {escape(chart_class)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="0" y="12" {TEXT_STYLE} font-weight="600">{escape(title)}</text>',
             f'<line x1="0" y1="{top + plot_height}" x2="{width}" y2="{top + plot_height}" stroke="#999"/>']
    for i, (label, value) in enumerate(items):
        bar = plot_height * value / largest
        x = i * slot + slot * 0.15
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{top + plot_height - bar:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{bar:.1f}" fill="{colour}" data-label="{escape(str(label))}" data-value="{value}">'
                     f'<title>{escape(str(label))}: {_number(value)}</title></rect>')
        if value:
            parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_height - bar - 3:.1f}" text-anchor="middle" '
                         f'{TEXT_STYLE} font-size="9">{_number(value)}</text>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{height - 6}" text-anchor="middle" {TEXT_STYLE} '
                     f'font-size="9">{escape(str(label))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# Aspect-ratio bins: log2(w/h) in half steps from 1:4 to 4:1, the engine's whole range.
ASPECT_CENTRES = [k / 2 for k in range(-4, 5)]


def _ratio_label(log2_ratio: float) -> str:
    ratio = 2 ** abs(log2_ratio)
    text = f"{ratio:.1f}".rstrip("0").rstrip(".")
    return "1:1" if log2_ratio == 0 else (f"{text}:1" if log2_ratio > 0 else f"1:{text}")


def aspect_histogram(sizes: Counter) -> list[tuple[str, float]]:
    """Counts per aspect bin (w:h) of a Counter of (width, height)."""
    counts = [0] * len(ASPECT_CENTRES)
    for (w, h), count in sizes.items():
        if not w or not h:
            continue
        log_ratio = math.log2(w / h)
        nearest = min(range(len(ASPECT_CENTRES)), key=lambda i: abs(ASPECT_CENTRES[i] - log_ratio))
        counts[nearest] += count
    return [(_ratio_label(c), n) for c, n in zip(ASPECT_CENTRES, counts)]


def size_histogram(sizes: Counter, most: int = 12) -> list[tuple[str, float]]:
    """Counts per canvas size (W×H), the commonest `most` ordered by aspect, the rest as 'other'."""
    known = [(size, n) for size, n in sizes.items() if size[0] and size[1]]
    top = sorted(known, key=lambda item: -item[1])[:most]
    other = sum(n for _, n in known) - sum(n for _, n in top)
    items = [(f"{w}×{h}", n) for (w, h), n in sorted(top, key=lambda item: (item[0][0] / item[0][1], item[0][0]))]
    return items + ([("other", other)] if other else [])
