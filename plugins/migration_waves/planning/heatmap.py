"""The workload-selection heatmap: a self-contained HTML page (inline SVG + JS) and a PNG.

Rows are workloads grouped by proposed wave; columns are the five dimensions, data gravity and
the weighted risk; a cell's colour runs from green (easy to move) to red (hard). The page has no
external asset: it opens from an evidence pack or an air-gapped laptop. matplotlib is imported
inside `heatmap_png` with the Agg backend (no display, no GUI toolkit).
"""

from __future__ import annotations

import itertools
import json
from html import escape
from pathlib import Path

from migration_waves.planning.planner import HEATMAP_COLUMNS, WavePlan

LABELS = {
    "gpu_need": "GPU need",
    "data_size": "data size",
    "latency_sensitivity": "latency",
    "compliance_scope": "compliance",
    "change_tolerance": "change risk",
    "data_gravity": "data gravity",
    "risk": "risk",
}


def colour(value: float) -> str:
    """Green (0) -> amber (0.5) -> red (1), as #rrggbb."""
    v = min(1.0, max(0.0, value))
    stops = [(0.0, (46, 160, 67)), (0.5, (240, 180, 41)), (1.0, (207, 34, 46))]
    for (a, ca), (b, cb) in itertools.pairwise(stops):
        if v <= b:
            t = (v - a) / (b - a)
            rgb = [round(x + (y - x) * t) for x, y in zip(ca, cb, strict=True)]
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#cf222e"


def _rows(plan: WavePlan) -> list[dict[str, object]]:
    by_name = {s.workload: s for s in plan.scores}
    rows = []
    for p in plan.placements:
        s = by_name[p.workload]
        rows.append(
            {
                "workload": s.workload,
                "kind": s.kind,
                "wave": p.wave,
                "reason": p.reason,
                "values": [s.risk if c == "risk" else s.scores[c] for c in HEATMAP_COLUMNS],
            }
        )
    return rows


def heatmap_svg(plan: WavePlan) -> str:
    """The heatmap as an SVG element (one <rect> per cell with a <title> tooltip)."""
    rows = _rows(plan)
    cell_w, cell_h, left, top = 92, 24, 300, 70
    width = left + cell_w * len(HEATMAP_COLUMNS) + 20
    height = top + cell_h * len(rows) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="heatmap" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12">'
    ]
    for j, col in enumerate(HEATMAP_COLUMNS):
        x = left + j * cell_w + cell_w / 2
        parts.append(
            f'<text class="col" data-col="{j}" x="{x}" y="{top - 10}" text-anchor="middle" '
            f'style="cursor:pointer" font-weight="bold">{escape(LABELS[col])} ▾</text>'
        )
    for i, row in enumerate(rows):
        y = top + i * cell_h
        label = f"{row['wave']} · {row['workload']} ({row['kind']})"
        parts.append(
            f'<g class="row" data-wave="{escape(str(row["wave"]))}" data-values="'
            f'{escape(json.dumps(row["values"]))}" transform="translate(0,{y})">'
            f'<text x="{left - 8}" y="{cell_h * 0.68}" text-anchor="end">{escape(label)}</text>'
        )
        for j, value in enumerate(row["values"]):  # type: ignore[arg-type]
            tip = f"{row['workload']}: {LABELS[HEATMAP_COLUMNS[j]]} {value:.2f} — {row['reason']}"
            parts.append(
                f'<rect x="{left + j * cell_w}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{colour(value)}"><title>{escape(tip)}</title></rect>'
                f'<text x="{left + j * cell_w + cell_w / 2}" y="{cell_h * 0.68}" text-anchor="middle" '
                f'fill="#fff" pointer-events="none">{value:.2f}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


_SCRIPT = """
(function () {
  const svg = document.getElementById('heatmap');
  const rows = Array.from(svg.querySelectorAll('g.row'));
  const cellH = 24, top = 70;
  let order = rows.slice();
  function layout() {
    const wave = document.getElementById('wave').value;
    let y = top;
    order.forEach(function (g) {
      const show = !wave || g.dataset.wave === wave;
      g.style.display = show ? '' : 'none';
      if (show) { g.setAttribute('transform', 'translate(0,' + y + ')'); y += cellH; }
    });
  }
  svg.querySelectorAll('text.col').forEach(function (t) {
    t.addEventListener('click', function () {
      const j = Number(t.dataset.col);
      const desc = t.dataset.desc !== 'true';
      t.dataset.desc = String(desc);
      order = rows.slice().sort(function (a, b) {
        const d = JSON.parse(a.dataset.values)[j] - JSON.parse(b.dataset.values)[j];
        return desc ? -d : d;
      });
      layout();
    });
  });
  document.getElementById('wave').addEventListener('change', layout);
  document.getElementById('reset').addEventListener('click', function () { order = rows.slice(); layout(); });
})();
"""


def heatmap_html(plan: WavePlan, title: str = "Workload selection heatmap") -> str:
    """A self-contained page: the SVG, a wave filter, click-to-sort columns, the placement table."""
    options = "".join(f'<option value="{escape(w.name)}">{escape(w.name)}</option>' for w in plan.waves)
    table = "".join(
        f"<tr><td>{escape(p.wave)}</td><td>{escape(p.workload)}</td><td>{escape(p.reason)}</td></tr>"
        for p in plan.placements
    )
    warnings = "".join(f"<li>{escape(w)}</li>" for w in plan.warnings)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}}
table{{border-collapse:collapse}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left}}
.note{{color:#57606a}}</style></head><body>
<h1>{escape(title)}</h1>
<p class="note">0 = easy to move (green), 1 = hard (red). Click a column to sort, hover a cell for why.
Inventory: {escape(plan.inventory or "-")}; at most {plan.max_per_wave} workloads per wave.</p>
<p><label>wave <select id="wave"><option value="">all</option>{options}</select></label>
<button id="reset" type="button">inventory order</button></p>
{heatmap_svg(plan)}
{"<h2>Warnings</h2><ul>" + warnings + "</ul>" if warnings else ""}
<h2>Placements</h2><table><tr><th>wave</th><th>workload</th><th>why</th></tr>{table}</table>
<script>{_SCRIPT}</script>
</body></html>
"""


def heatmap_png(plan: WavePlan, path: str | Path, *, dpi: int = 110) -> Path:
    """The heatmap as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    rows = _rows(plan)
    values = [row["values"] for row in rows]
    cmap = LinearSegmentedColormap.from_list("risk", [colour(0), colour(0.5), colour(1)])
    fig, ax = plt.subplots(figsize=(1.2 * len(HEATMAP_COLUMNS) + 3.5, 0.38 * len(rows) + 1.6))
    try:
        ax.imshow(values, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(
            range(len(HEATMAP_COLUMNS)), [LABELS[c] for c in HEATMAP_COLUMNS], rotation=30, ha="right"
        )
        ax.set_yticks(range(len(rows)), [f"{r['wave']} · {r['workload']}" for r in rows])
        for i, row in enumerate(values):
            for j, v in enumerate(row):  # type: ignore[arg-type]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white", fontsize=8)
        ax.set_title("Workload selection heatmap (0 easy, 1 hard)")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=dpi)
    finally:
        plt.close(fig)
    return out
