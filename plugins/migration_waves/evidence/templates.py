# ruff: noqa: E501
# (HTML template lines: wrapping table rows to 110 columns would make the markup harder to read.)
"""HTML template of the wave report: one self-contained file (inline CSS and SVG, no external assets)."""

from __future__ import annotations

from typing import Any

REPORT_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Wave {{ wave }}: {{ outcome }} ({{ run_id }})</title>
<style>
  :root { --ok:#2e7d32; --bad:#c62828; --muted:#607d8b; --line:#dfe3e6; --bg:#f6f8fa; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Arial, sans-serif; color:#1f2933;
         margin:0; background:#fff; }
  main { max-width: 1160px; margin: 0 auto; padding: 0 24px 48px; }
  header.top { padding: 20px 24px; color:#fff; }
  header.SUCCESS { background: var(--ok); } header.FAILED { background: var(--bad); }
  header.ROLLED_BACK { background: #b26a00; } header.SKIPPED { background: #546e7a; }
  header.top h1 { margin:0 0 4px; font-size: 24px; }
  header.top .meta { opacity: .92; font-size: 13px; }
  header.top ul { margin: 8px 0 0; padding-left: 20px; }
  h2 { margin: 32px 0 8px; font-size: 19px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
  h3 { margin: 18px 0 6px; font-size: 15px; }
  table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { background: var(--bg); font-weight: 600; font-size: 13px; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  tr:nth-child(even) td { background: #fbfcfd; }
  .badge { display:inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
           white-space: nowrap; background:#eceff1; color:#37474f; }
  .badge.passed, .badge.promote, .badge.pass, .badge.continue { background:#e3f2e5; color: var(--ok); }
  .badge.failed, .badge.rollback, .badge.fail, .badge.rolled-back { background:#fde7e7; color: var(--bad); }
  .badge.skipped, .badge.not-run, .badge.inconclusive { background:#f1f3f4; color: var(--muted); }
  .muted { color: var(--muted); } .small { font-size: 12px; }
  .reason { color: var(--bad); font-size: 12px; }
  .cards { display:flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
  .card { border:1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 170px; background: var(--bg); }
  .card .k { font-size: 12px; color: var(--muted); } .card .v { font-size: 18px; font-weight: 600; }
  .chart { max-width: 100%; height: auto; border:1px solid var(--line); border-radius: 6px; background:#fff; }
  .chart .grid { stroke: #eceff1; } .chart .axis { font-size: 11px; fill: #546e7a; }
  .chart .chart-title { font-size: 13px; font-weight: 600; fill: #1f2933; }
  .chart .target { stroke: var(--bad); stroke-dasharray: 5,4; }
  .runbook { border:1px solid var(--line); border-radius: 6px; padding: 4px 20px 12px; background:#fcfcfd; }
  .runbook h1 { font-size: 20px; } .runbook h2 { font-size: 17px; } .runbook h4 { margin: 12px 0 4px; }
  .warn { background:#fff8e1; border:1px solid #ffe082; padding: 8px 12px; border-radius: 6px; }
  code { background: var(--bg); padding: 0 3px; border-radius: 3px; }
  nav a { margin-right: 12px; }
  @media print { header.top { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
</style>
</head>
<body>
<header class="top {{ outcome | replace(' ', '_') }}">
  <h1>Wave {{ wave }}: {{ outcome }}</h1>
  <div class="meta">run {{ run_id }} · generated {{ generated_at }}{% if description %} · {{ description }}{% endif %}</div>
  {% if reasons %}<ul>{% for r in reasons %}<li>{{ r }}</li>{% endfor %}</ul>{% endif %}
</header>
<main>
<div class="cards">
  {% for role in ["launch", "validation", "cutover", "rollback"] %}
  <div class="card"><div class="k">{{ role }} owner</div><div class="v">{{ owners[role] }}</div></div>
  {% endfor %}
  <div class="card"><div class="k">RTO / RPO</div><div class="v">{{ targets.rto_minutes | num(1) }} / {{ targets.rpo_minutes | num(1) }} min</div></div>
  <div class="card"><div class="k">targets</div><div class="v">p95 ≤ {{ targets.p95_ms | num(1) }} ms · err ≤ {{ targets.error_rate | pct }}</div></div>
</div>
<nav class="small"><a href="#stages">Stages</a><a href="#data">Data</a><a href="#gpu">GPU</a><a href="#resilience">Resilience</a><a href="#canary">Canary</a><a href="#cost">Cost</a><a href="#acceptance">Acceptance</a><a href="#rollback">Rollback</a><a href="#runbook">Runbook</a></nav>
{% if errors %}<div class="warn"><strong>Parts of this report could not be built:</strong><ul>{% for e in errors %}<li>{{ e }}</li>{% endfor %}</ul></div>{% endif %}

<h2 id="stages">Stages</h2>
<table>
<tr><th>stage</th><th>task</th><th>result</th><th>key figures</th></tr>
{% for r in rows %}
<tr><td>{{ r.stage }}</td><td>{{ r.name }}</td><td><span class="badge {{ r.status | replace(' ', '-') }}">{{ r.status }}</span></td>
<td>{{ r.figures }}{% if r.reason %}<div class="reason">{{ r.reason }}</div>{% endif %}</td></tr>
{% else %}<tr><td colspan="4" class="muted">No records.</td></tr>{% endfor %}
</table>

<h2 id="data">Data</h2>
{% if data %}
<table>
<tr><th>dataset</th><th>class</th><th class="num">files copied</th><th class="num">bytes copied</th><th class="num">files skipped</th><th>copy</th><th>verification</th><th>Great Expectations</th></tr>
{% for d in data %}
<tr><td>{{ d.dataset }}</td><td>{{ d["class"] }}</td>
<td class="num">{{ d.files_copied | num(0) }}</td><td class="num">{{ d.bytes_copied | bytes }}</td><td class="num">{{ d.files_skipped | num(0) }}</td>
<td><span class="badge {{ d.copy_status | replace(' ', '-') }}">{{ d.copy_status }}</span></td>
<td><span class="badge {{ d.verify_status | replace(' ', '-') }}">{{ d.verify_status }}</span> <span class="small">{{ d.verify_detail }}</span></td>
<td><span class="badge {{ d.gx_status | replace(' ', '-') }}">{{ d.gx_status }}</span> <span class="small">{{ d.gx_detail }}</span>
{% if d.docs %}<div class="small"><a href="{{ d.docs }}">Data Docs</a></div>{% endif %}
{% for r in d.reasons %}<div class="reason">{{ r }}</div>{% endfor %}</td></tr>
{% endfor %}
</table>
{% if lag_svg %}<h3>Replication lag per copy pass (vs RPO)</h3>{{ lag_svg | safe }}{% endif %}
{% else %}<p class="muted">No datasets in this wave.</p>{% endif %}

<h2 id="gpu">GPU stack</h2>
{% for g in gpu %}
<h3>{{ g.image }} {% if g.conformance %}<span class="badge {{ g.conformance | replace(' ', '-') }}">conformance {{ g.conformance }}</span>{% endif %}</h3>
{% if g.checks %}
<table><tr><th>check</th><th>expected</th><th>actual</th><th>result</th><th>severity</th><th>message</th></tr>
{% for c in g.checks %}<tr><td>{{ c.name }}</td><td>{{ c.expected }}</td><td>{{ c.actual }}</td>
<td><span class="badge {{ 'passed' if c.passed else 'failed' }}">{{ 'passed' if c.passed else 'failed' }}</span></td>
<td>{{ c.severity or '' }}</td><td class="small">{{ c.message or '' }}</td></tr>{% endfor %}
</table>{% endif %}
{% if g.benchmark %}
<p>Benchmark{% if g.benchmark.metric %} <code>{{ g.benchmark.metric }}</code>{% endif %}: <strong>{{ g.benchmark.gflops | num(1) }} GFLOP/s</strong> vs baseline {{ g.benchmark.baseline_gflops | num(1) }} GFLOP/s
(ratio {{ g.benchmark.ratio | ratio }}) {{ g.benchmark.bar | safe }}
<span class="badge {{ g.benchmark.status | replace(' ', '-') }}">{{ g.benchmark.status }}</span>
{% if g.benchmark.reason %}<span class="small muted">{{ g.benchmark.reason }}</span>{% endif %}</p>
{% endif %}
{% if g.suite %}
<table><tr><th>benchmark</th><th class="num">measured</th><th class="num">baseline</th><th class="num">pass line</th><th class="num">ratio</th><th>result</th><th>note</th></tr>
{% for r in g.suite %}<tr><td>{{ r.metric }}{% if r.unit %} <span class="muted small">({{ r.unit }})</span>{% endif %}</td>
<td class="num">{{ r.measured | num(1) }}</td><td class="num">{{ r.baseline | num(1) }}</td><td class="num">{{ r.line }}</td>
<td class="num">{{ r.ratio | ratio }}</td>
<td><span class="badge {{ r.status | replace(' ', '-') }}">{{ r.status }}</span></td><td class="small">{{ r.note }}</td></tr>{% endfor %}
</table>{% endif %}
{% else %}<p class="muted">No GPU evidence recorded.</p>{% endfor %}

<h2 id="resilience">Resilience</h2>
{% if resilience %}
<table><tr><th>workload</th><th class="num">time to recover</th><th class="num">RTO</th><th class="num">steps lost</th><th>result</th><th>reasons</th></tr>
{% for r in resilience %}<tr><td>{{ r.workload }}</td><td class="num">{{ r.time_to_recover_s | num(1, ' s') }}</td>
<td class="num">{{ r.rto_s | num(0, ' s') }}</td><td class="num">{{ r.steps_lost | num(0) }}</td>
<td><span class="badge {{ r.status | replace(' ', '-') }}">{{ r.status }}</span></td>
<td class="small">{{ r.reasons | join('; ') }}</td></tr>{% endfor %}
</table>
{% else %}<p class="muted">No resilience drill recorded.</p>{% endif %}

<h2 id="canary">Canary</h2>
{% for c in canary %}
<h3>{{ c.workload }}</h3>
<p class="small muted">Gate per step: p95 ratio ≤ {{ c.limits.p95_ratio_max | num(2) }}, candidate error rate ≤ {{ c.limits.error_rate_max | pct }}.
{% if c.baseline %}On-prem baseline before the canary: p50 {{ c.baseline.p50 | num(1, ' ms') }}, p95 {{ c.baseline.p95 | num(1, ' ms') }}, p99 {{ c.baseline.p99 | num(1, ' ms') }}, errors {{ c.baseline.error_rate | pct }} ({{ c.baseline.count | num(0) }} requests).{% endif %}</p>
<table><tr><th class="num">weight</th><th class="num">baseline p95</th><th class="num">candidate p95</th><th class="num">p95 ratio</th><th class="num">baseline errors</th><th class="num">candidate errors</th><th class="num">samples</th><th>verdict</th></tr>
{% for s in c.steps %}<tr><td class="num">{{ s.label }}</td><td class="num">{{ s.baseline.p95 | num(1, ' ms') }}</td><td class="num">{{ s.candidate.p95 | num(1, ' ms') }}</td>
<td class="num">{{ s.p95_ratio | ratio }}</td><td class="num">{{ s.baseline.error_rate | pct }}</td><td class="num">{{ s.candidate.error_rate | pct }}</td>
<td class="num">{{ s.baseline.count | num(0) }} / {{ s.candidate.count | num(0) }}</td>
<td><span class="badge {{ s.verdict | replace(' ', '-') }}">{{ s.verdict }}</span>{% if s.decision %} → <span class="badge {{ s.decision }}">{{ s.decision }}</span>{% endif %}{% if s.aborted %} <span class="badge rolled-back">traffic restored</span>{% endif %}{% for r in s.reasons %}<div class="small">{{ r }}</div>{% endfor %}</td></tr>{% endfor %}
</table>
{{ c.svg | safe }}
{% else %}<p class="muted">No canary steps recorded.</p>{% endfor %}

<h2 id="cost">Cost</h2>
{% if cost %}
<div class="cards">
<div class="card"><div class="k">egress forecast (preflight)</div><div class="v">{{ cost.forecast.forecast_usd | usd }}</div><div class="small">{{ cost.forecast.bytes | bytes }}</div></div>
<div class="card"><div class="k">budget</div><div class="v">{{ cost.budget_usd | usd }}</div><div class="small"><span class="badge {{ cost.forecast_status | replace(' ', '-') }}">{{ cost.forecast_status }}</span></div></div>
<div class="card"><div class="k">actually moved, priced</div><div class="v">{{ cost.actual.usd | usd }}</div><div class="small">{{ cost.actual.bytes | bytes }}</div></div>
</div>
{% if cost_svg %}{{ cost_svg | safe }}{% endif %}
{% for r in cost.forecast.reasons or [] %}<p class="small">{{ r }}</p>{% endfor %}
{% if cost.actual.error %}<p class="reason">{{ cost.actual.error }}</p>{% endif %}
{% if cost.flows %}
<table id="cost-flows"><tr><th>flow (forecast vs actual)</th><th>datasets</th><th class="num">forecast bytes</th><th class="num">forecast</th><th class="num">bytes moved</th><th class="num">actual</th></tr>
{% for f in cost.flows %}<tr><td>{{ f.flow }}</td><td class="small">{{ f.datasets | join(', ') }}</td><td class="num">{{ f.forecast_bytes | bytes }}</td><td class="num">{{ f.forecast_usd | usd }}</td><td class="num">{{ f.bytes | bytes }}</td><td class="num">{{ f.usd | usd }}</td></tr>{% endfor %}
</table>
{% endif %}
{% if cost.actual.datasets %}
<table><tr><th>dataset</th><th>flow</th><th>prices</th><th class="num">bytes moved</th><th class="num">cost</th></tr>
{% for d in cost.actual.datasets %}<tr><td>{{ d.dataset }}</td><td>{{ d.flow }}</td><td class="small">{{ d.price_entries | join(' + ') }}</td><td class="num">{{ d.bytes | bytes }}</td><td class="num">{{ d.usd | usd }}</td></tr>{% endfor %}
</table>
{% if cost.actual.sources %}<p class="small muted">Prices: {% for k, v in cost.actual.sources.items() %}{{ k }}: {{ v }}{% if not loop.last %}; {% endif %}{% endfor %}</p>{% endif %}
{% endif %}
{% else %}<p class="muted">No cost evidence.</p>{% endif %}

<h2 id="acceptance">Acceptance</h2>
{% if acceptance %}
<p><span class="badge {{ acceptance.status | replace(' ', '-') }}">{{ acceptance.status }}</span></p>
<table><tr><th>check</th><th class="num">target</th><th class="num">measured</th><th>result</th></tr>
{% for c in acceptance.checks %}<tr><td>{{ c.name }}</td><td class="num">{{ c.target }}</td><td class="num">{{ c.measured }}</td>
<td><span class="badge {{ 'passed' if c.passed else 'failed' }}">{{ 'passed' if c.passed else 'failed' }}</span></td></tr>{% endfor %}
</table>
{% for r in acceptance.reasons %}<p class="small">{{ r }}</p>{% endfor %}
{% else %}<p class="muted">Acceptance was not evaluated in this run.</p>{% endif %}

<h2 id="rollback">Rollback</h2>
{% for rb in rollback %}
<p><strong>{{ rb.name }}</strong> <span class="badge {{ rb.status | replace(' ', '-') }}">{{ rb.status }}</span>
{% if rb.reason %} reason: {{ rb.reason }}{% endif %}{% if rb.seconds is not none %} · time to roll back {{ rb.seconds | num(1, ' s') }} (RTO {{ (targets.rto_minutes * 60) | num(0, ' s') }}){% endif %}</p>
{% if rb.workloads %}<table><tr><th>workload</th><th>before</th><th>after</th><th class="num">seconds</th></tr>
{% for w in rb.workloads %}<tr><td>{{ w.workload }}</td><td>{{ w.before }}</td><td>{{ w.after }}</td><td class="num">{{ w.seconds | num(2) }}</td></tr>{% endfor %}
</table>{% endif %}
{% if rb.other %}<p class="small muted">{% for k, v in rb.other.items() %}{{ k }}: {{ v }}{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
{% else %}<p class="muted">No rollback in this run.</p>{% endfor %}

<h2 id="runbook">Runbook</h2>
<div class="runbook">{{ runbook_html | safe }}</div>
</main>
</body>
</html>
"""


def render_report_html(ctx: dict[str, Any]) -> str:
    """Render the report template with the context built by report.build_evidence_pack."""
    import jinja2

    from migration_waves.evidence.report import fmt_bytes, fmt_num, fmt_pct, fmt_ratio, fmt_usd

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True)

    def tolerant(fmt: Any) -> Any:
        # A figure a record does not have is Undefined here; show it as missing, never as "".
        return lambda value, *args: fmt(None if isinstance(value, jinja2.Undefined) else value, *args)

    env.filters.update(
        num=tolerant(fmt_num),
        pct=tolerant(fmt_pct),
        bytes=tolerant(fmt_bytes),
        usd=tolerant(fmt_usd),
        ratio=tolerant(fmt_ratio),
    )
    return env.from_string(REPORT_TEMPLATE).render(**ctx)
