# ruff: noqa: E501
# (HTML template lines: wrapping table rows to 110 columns would make the markup harder to read.)
"""HTML of the waves dashboard: one page, inline CSS, no scripts; shown in the Airflow UI's nav.

The UI shows it in an iframe sandboxed without allow-popups or allow-top-navigation, so links
open inside the frame (the UI keeps the frame's path in its own URL, so Back works).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migration_waves.evidence.dashboard import PlanView, WaveView

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Migration waves</title>
<style>
  :root { --ok:#2e7d32; --bad:#c62828; --warn:#b26a00; --muted:#607d8b; --line:#dfe3e6; --bg:#f6f8fa; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Arial, sans-serif; color:#1f2933; margin:0; padding: 16px 20px 40px; }
  h1 { font-size: 22px; margin: 0 0 2px; } .sub { color: var(--muted); font-size: 12px; margin-bottom: 14px; }
  .wave { border:1px solid var(--line); border-radius: 8px; margin: 0 0 16px; overflow: hidden; }
  .wave > header { display:flex; flex-wrap: wrap; align-items: baseline; gap: 10px; padding: 10px 14px; background: var(--bg); border-bottom: 1px solid var(--line); }
  .wave > header h2 { margin: 0; font-size: 18px; } .order { color: var(--muted); font-weight: 600; }
  .body { padding: 8px 14px 12px; }
  h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 14px 0 6px; }
  .badge { display:inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 600; background:#eceff1; color:#37474f; white-space: nowrap; }
  .s-accepted, .s-success, .s-passed, .s-pass, .s-promote, .s-continue { background:#e3f2e5; color: var(--ok); }
  .s-failed, .s-fail, .s-rollback { background:#fde7e7; color: var(--bad); }
  .s-rolled-back, .s-blocked, .s-running { background:#fff3e0; color: var(--warn); }
  .s-skipped, .s-not-run, .s-not-started, .s-recorded, .s-inconclusive { background:#f1f3f4; color: var(--muted); }
  .stages { display:flex; flex-wrap: wrap; gap: 4px; }
  .stage { border-radius: 4px; padding: 3px 8px; font-size: 12px; border: 1px solid var(--line); }
  table { border-collapse: collapse; margin: 2px 0 6px; min-width: 50%; }
  th, td { text-align: left; padding: 4px 10px 4px 0; border-bottom: 1px solid var(--line); font-size: 13px; }
  th { color: var(--muted); font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .cards { display:flex; flex-wrap: wrap; gap: 10px; }
  .card { border:1px solid var(--line); border-radius: 6px; padding: 6px 12px; background: var(--bg); min-width: 150px; }
  .card .k { font-size: 11px; color: var(--muted); } .card .v { font-size: 16px; font-weight: 600; }
  .timeline { display:flex; align-items: center; flex-wrap: wrap; gap: 0; }
  .step { border:1px solid var(--line); border-radius: 6px; padding: 4px 10px; font-size: 12px; text-align:center; min-width: 90px; }
  .arrow { color: var(--muted); padding: 0 6px; }
  .muted { color: var(--muted); } .reason { color: var(--bad); font-size: 12px; }
  a { color: #1565c0; } .links a { margin-right: 14px; }
  .empty { color: var(--muted); padding: 20px; border: 1px dashed var(--line); border-radius: 8px; }
</style>
</head>
<body>
<h1>Migration waves</h1>
<div class="sub">{{ waves | length }} wave(s) in order · read-only · signed in as {{ user }} · {{ now }}</div>
{% if plan %}
<section class="wave" id="wave-plan" data-testid="wave-plan">
  <header><h2>Latest wave plan</h2><span class="muted">run {{ plan.run_id or '–' }} · {{ plan.generated_at }} · {{ plan.waves | length }} wave(s) proposed</span></header>
  <div class="body">
    {% for warning in plan.warnings %}<div class="reason">{{ warning }}</div>{% endfor %}
    {% if plan.heatmap_png %}<img src="runs/{{ plan.wave }}/{{ plan_folder }}/files/{{ plan.heatmap_png }}" alt="workload-selection heatmap of the latest plan" style="max-width:100%">{% endif %}
    <div class="links">{% if plan.heatmap_html %}<a href="runs/{{ plan.wave }}/{{ plan_folder }}/files/{{ plan.heatmap_html }}">interactive heatmap</a>{% endif %}
      {% for name, wls in plan.waves.items() %}<span class="muted">{{ name }}: {{ wls | join(', ') }}</span> {% endfor %}</div>
  </div>
</section>
{% endif %}
{% if not waves %}<div class="empty">No wave specs you may read were found.</div>{% endif %}
{% for w in waves %}
<section class="wave" id="wave-{{ w.wave }}" data-wave="{{ w.wave }}" data-status="{{ w.status }}">
  <header>
    <span class="order">#{{ w.order }}</span>
    <h2>{{ w.wave }}</h2>
    <span class="badge s-{{ w.status | replace(' ', '-') }}" data-testid="wave-status">{{ w.status | upper }}</span>
    <span class="muted">{{ w.description }}</span>
    <span class="muted">DAG <code>{{ dag_ids[w.wave] }}</code></span>
  </header>
  <div class="body">
    {% if w.error %}<div class="reason">{{ w.error }}</div>{% endif %}
    <div class="cards">
      {% if w.accepted_at %}<div class="card"><div class="k">accepted</div><div class="v">{{ w.accepted_at }}</div><div class="k">run {{ w.accepted_run }}</div></div>{% endif %}
      {% if w.cutover_eta %}<div class="card"><div class="k">cutover ETA (next change window)</div><div class="v">{{ w.cutover_eta }}</div></div>{% endif %}
      {% if w.after %}<div class="card"><div class="k">after</div><div class="v">{{ w.after | join(', ') }}</div>{% if w.blocked_by %}<div class="reason">waiting for {{ w.blocked_by | join(', ') }}</div>{% endif %}</div>{% endif %}
      <div class="card"><div class="k">writes</div><div class="v">{{ 'frozen' if w.frozen else 'open' }}</div></div>
      <div class="card"><div class="k">runs</div><div class="v">{{ w.runs | length }}</div></div>
    </div>
    {% set r = w.latest %}
    {% if r %}
    <h3>Latest run</h3>
    <div><b data-testid="run-id">{{ r.run_id }}</b> <span class="badge s-{{ r.outcome | lower | replace(' ', '-') }}" data-testid="run-outcome">{{ r.outcome }}</span> <span class="muted">last record {{ r.updated_at }}</span></div>
    {% for reason in r.reasons %}<div class="reason">{{ reason }}</div>{% endfor %}
    <div class="links">
      {% for f in r.files %}<a href="runs/{{ w.wave }}/{{ r.folder }}/files/{{ f }}">{{ f }}</a>{% endfor %}
      {% for ds, path in r.docs.items() %}<a href="runs/{{ w.wave }}/{{ r.folder }}/files/{{ path }}">Data Docs: {{ ds }}</a>{% endfor %}
    </div>
    <h3>Stages</h3>
    <div class="stages">{% for s in r.stages %}<span class="stage s-{{ s.status | replace(' ', '-') }}" title="{{ s.passed }} passed, {{ s.failed }} failed, {{ s.skipped }} skipped">{{ s.stage }}{% if s.records %} {{ s.passed }}/{{ s.records }}{% endif %}</span>{% endfor %}</div>
    {% if r.lag %}
    <h3>Replication lag</h3>
    <table><tr><th>dataset</th><th>pass</th><th class="num">lag</th><th class="num">RPO</th><th></th></tr>
    {% for l in r.lag %}<tr><td>{{ l.dataset }}</td><td>{{ l.mode }}</td><td class="num">{{ '%.2f' % l.lag_s }} s</td><td class="num">{{ '%.0f' % l.rpo_s }} s</td><td><span class="badge s-{{ 'passed' if l.within_rpo else 'failed' }}">{{ 'within RPO' if l.within_rpo else 'over RPO' }}</span></td></tr>{% endfor %}
    </table>
    {% endif %}
    {% if r.baselines %}
    <h3>Baseline vs post-migration</h3>
    <table><tr><th>workload</th><th class="num">on-prem p95</th><th class="num">cloud p95</th><th class="num">target p95</th><th class="num">on-prem errors</th><th class="num">cloud errors</th><th>measured by</th></tr>
    {% for b in r.baselines %}<tr><td>{{ b.workload }}</td><td class="num">{{ ms(b.baseline_p95_ms) }}</td><td class="num">{{ ms(b.post_p95_ms) }}</td><td class="num">{{ ms(b.target_p95_ms) }}</td><td class="num">{{ pct(b.baseline_error_rate) }}</td><td class="num">{{ pct(b.post_error_rate) }}</td><td class="muted">{{ b.post_source or 'no canary step yet' }}</td></tr>{% endfor %}
    </table>
    {% endif %}
    {% if r.canary %}
    <h3>Canary timeline</h3>
    {% for wl, steps in r.canary | groupby('workload') %}
    <div class="timeline"><span class="muted" style="margin-right:8px">{{ wl }}</span>
      {% for s in steps %}{% if not loop.first %}<span class="arrow">→</span>{% endif %}<div class="step"><b>{{ '%g' % s.pct }}%</b><br><span class="badge s-{{ 'rollback' if s.aborted else s.verdict | replace(' ', '-') }}">{{ 'aborted' if s.aborted else s.verdict }}</span><br><span class="muted">p95 ×{{ '%.2f' % s.p95_ratio if s.p95_ratio is not none else '–' }}</span></div>{% endfor %}
    </div>
    {% endfor %}
    {% endif %}
    <h3>Costs</h3>
    <div class="cards">
      <div class="card"><div class="k">egress forecast</div><div class="v">{{ usd(r.cost.forecast_usd) }}</div></div>
      <div class="card"><div class="k">egress budget</div><div class="v">{{ usd(r.cost.budget_usd) }}</div></div>
      <div class="card"><div class="k">bytes moved</div><div class="v">{{ nbytes(r.cost.actual_bytes) }}</div></div>
    </div>
    {% if w.runs | length > 1 %}
    <h3>Earlier runs</h3>
    <div class="links">{% for run in w.runs[1:10] %}<a href="runs/{{ w.wave }}/{{ run }}/files/report.html">{{ run }}</a>{% endfor %}</div>
    {% endif %}
    {% else %}
    <p class="muted">No run yet.</p>
    {% endif %}
  </div>
</section>
{% endfor %}
</body>
</html>
"""


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def _usd(value: Any) -> str:
    from migration_waves.evidence.report import fmt_usd

    return fmt_usd(value)


def _bytes(value: Any) -> str:
    from migration_waves.evidence.report import fmt_bytes

    return fmt_bytes(value)


def render_dashboard(
    waves: list[WaveView], *, user: str, dag_ids: dict[str, str], plan: PlanView | None = None
) -> str:
    """The dashboard page; `plan` (the latest wave plan) adds its heatmap on top."""
    from jinja2 import Environment

    from migration_waves.evidence.dashboard import PLAN_FOLDER

    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(ms=_ms, pct=_pct, usd=_usd, nbytes=_bytes)
    return env.from_string(PAGE).render(
        waves=waves,
        user=user,
        dag_ids=dag_ids,
        plan=plan,
        plan_folder=PLAN_FOLDER,
        now=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
