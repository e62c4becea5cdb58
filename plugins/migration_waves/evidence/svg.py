"""Small inline SVG charts for the report (no plotting library: the report must be self-contained)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

BASELINE_COLOUR = "#3b6ea5"
CANDIDATE_COLOUR = "#d9822b"


def _f(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _nice_max(value: float) -> float:
    """Round an axis maximum up to 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def latency_svg(steps: list[dict[str, Any]], target_ms: float | None = None, title: str = "") -> str:
    """Per canary step, baseline and candidate latency: box p50..p95, whisker to p99, target line.

    steps: [{"label": "5%", "baseline": {"p50":..,"p95":..,"p99":..}, "candidate": {...}}]; missing
    figures are skipped, so a partial run still draws what it measured.
    """
    width, height = 680, 280
    left, right, top, bottom = 56, 16, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [
        v
        for s in steps
        for side in ("baseline", "candidate")
        for k in ("p50", "p95", "p99")
        if (v := _f((s.get(side) or {}).get(k))) is not None
    ]
    if not steps or not values:
        return ""
    # Scale to the measurements; a target far above them would squash the boxes, so it is then
    # named in the corner instead of drawn.
    draw_target = bool(target_ms) and float(target_ms) <= max(values) * 2
    y_max = _nice_max(max([*values, float(target_ms or 0) if draw_target else 0.0]) * 1.05)

    def y(v: float) -> float:
        return top + plot_h - (v / y_max) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title or "latency")}" class="chart">',
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(6):  # horizontal grid and y labels
        v = y_max * i / 5
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="axis">{v:g}</text>'
        )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2:.0f}" transform="rotate(-90 14 {top + plot_h / 2:.0f})" '
        'text-anchor="middle" class="axis">ms</text>'
    )
    group_w = plot_w / len(steps)
    box_w = min(28.0, group_w / 4)
    for i, step in enumerate(steps):
        cx = left + group_w * (i + 0.5)
        parts.append(
            f'<text x="{cx:.1f}" y="{height - bottom + 18}" text-anchor="middle" class="axis">'
            f"{escape(str(step.get('label', '')))}</text>"
        )
        for side, colour, dx in (("baseline", BASELINE_COLOUR, -0.7), ("candidate", CANDIDATE_COLOUR, 0.7)):
            summary = step.get(side) or {}
            p50, p95, p99 = (_f(summary.get(k)) for k in ("p50", "p95", "p99"))
            x = cx + dx * box_w - box_w / 2
            tip = f"{side} {step.get('label', '')}: " + ", ".join(
                f"{k} {v:.1f} ms" for k, v in (("p50", p50), ("p95", p95), ("p99", p99)) if v is not None
            )
            parts.append(f"<g><title>{escape(tip)}</title>")
            if p99 is not None and p95 is not None:
                parts.append(
                    f'<line x1="{x + box_w / 2:.1f}" x2="{x + box_w / 2:.1f}" y1="{y(p95):.1f}" '
                    f'y2="{y(p99):.1f}" stroke="{colour}" stroke-width="2"/>'
                    f'<line x1="{x + box_w * 0.25:.1f}" x2="{x + box_w * 0.75:.1f}" y1="{y(p99):.1f}" '
                    f'y2="{y(p99):.1f}" stroke="{colour}" stroke-width="2"/>'
                )
            if p50 is not None and p95 is not None:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y(p95):.1f}" width="{box_w:.1f}" '
                    f'height="{max(1.0, y(p50) - y(p95)):.1f}" fill="{colour}" fill-opacity="0.75"/>'
                )
            elif p95 is not None:
                parts.append(f'<circle cx="{x + box_w / 2:.1f}" cy="{y(p95):.1f}" r="4" fill="{colour}"/>')
            parts.append("</g>")
    if target_ms and not draw_target:
        parts.append(
            f'<text x="{width - right}" y="18" text-anchor="end" class="axis">'
            f"target p95 {target_ms:g} ms (above the chart)</text>"
        )
    elif target_ms:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(target_ms):.1f}" y2="{y(target_ms):.1f}" '
            'class="target"/>'
            f'<text x="{width - right - 4}" y="{y(target_ms) - 5:.1f}" text-anchor="end" class="axis">'
            f"target p95 {target_ms:g} ms</text>"
        )
    legend_y = height - 8
    parts.append(
        f'<rect x="{left}" y="{legend_y - 9}" width="10" height="10" fill="{BASELINE_COLOUR}"/>'
        f'<text x="{left + 14}" y="{legend_y}" class="axis">baseline (on-prem)</text>'
        f'<rect x="{left + 140}" y="{legend_y - 9}" width="10" height="10" fill="{CANDIDATE_COLOUR}"/>'
        f'<text x="{left + 154}" y="{legend_y}" class="axis">candidate (cloud)</text>'
        f'<text x="{width - right}" y="{legend_y}" text-anchor="end" class="axis">'
        "box p50 to p95, whisker to p99</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def ratio_bar_svg(value: float | None, floor: float | None, width: int = 160) -> str:
    """A small horizontal bar of a measured/baseline ratio with a marker at the pass floor."""
    v = _f(value)
    if v is None:
        return ""
    scale = max(1.5, v * 1.1, (floor or 0) * 1.1)
    w = max(1.0, min(v / scale, 1.0) * width)
    colour = "#2e7d32" if floor is None or v >= floor else "#c62828"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="14" class="bar">',
        f'<rect x="0" y="2" width="{width}" height="10" fill="#eceff1"/>',
        f'<rect x="0" y="2" width="{w:.1f}" height="10" fill="{colour}"/>',
        f'<line x1="{width / scale:.1f}" x2="{width / scale:.1f}" y1="0" y2="14" stroke="#455a64"/>',
    ]
    if floor is not None:
        fx = min(floor / scale, 1.0) * width
        parts.append(
            f'<line x1="{fx:.1f}" x2="{fx:.1f}" y1="0" y2="14" stroke="#c62828" stroke-dasharray="2,2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(
    rows: list[tuple[str, float]],
    *,
    limit: float | None,
    unit: str,
    limit_label: str = "limit",
    width: int = 560,
) -> str:
    """Horizontal bars, one per (label, value), with a dashed line at `limit`; over-limit bars red."""
    values = [(label, v) for label, value in rows if (v := _f(value)) is not None]
    if not values:
        return ""
    top = _nice_max(max([v for _, v in values] + [limit or 0.0]) * 1.1 or 1.0)
    label_w, bar_w, row_h = 190, width - 190 - 70, 20
    height = row_h * len(values) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">']
    for i, (label, v) in enumerate(values):
        y = 4 + i * row_h
        w = max(1.0, v / top * bar_w)
        colour = "#c62828" if limit is not None and v > limit else "#1565c0"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="11">{escape(label)}</text>'
        )
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="12" fill="{colour}"/>')
        parts.append(
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="11">{v:,.3g} {escape(unit)}</text>'
        )
    if limit is not None:
        lx = label_w + min(limit / top, 1.0) * bar_w
        parts.append(
            f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="0" y2="{height - 16}" stroke="#c62828" '
            'stroke-dasharray="4,3"/>'
        )
        parts.append(
            f'<text x="{lx:.1f}" y="{height - 4}" text-anchor="middle" font-size="10" fill="#c62828">'
            f"{escape(limit_label)} {limit:,.3g} {escape(unit)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
