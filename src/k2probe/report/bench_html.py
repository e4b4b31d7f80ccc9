"""A load test's page: latency percentiles and throughput against concurrency (or rate), with axes and units, and
the table of every step — self-contained, no script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k2probe.core.untrusted import html as escape
from k2probe.report.bench import failures_text, knee_text, rule_text, settings_text, warmup_text
from k2probe.report.charts import Bar, hbar, line_chart
from k2probe.report.html import write_page


def write_bench_report(path: Path, route: str, run_id: str, steps: list[dict[str, Any]], *, emulated: bool,
                       stream: bool, settings: dict[str, Any] | None = None, started_at: float | None = None,
                       warmup: dict[str, Any] | None = None, sweep: dict[str, Any] | None = None) -> Path:
    return write_page(path, bench_page(route, run_id, steps, emulated=emulated, stream=stream, settings=settings,
                                       started_at=started_at, warmup=warmup, sweep=sweep))


def bench_page(route: str, run_id: str, steps: list[dict[str, Any]], *, emulated: bool, stream: bool,
               settings: dict[str, Any] | None = None, started_at: float | None = None,
               warmup: dict[str, Any] | None = None, sweep: dict[str, Any] | None = None) -> str:
    """A bench sweep's page: settings, the steps' table, percentile, throughput and failure charts."""
    closed = [s for s in steps if "concurrency" in s]
    opened = [s for s in steps if "rate" in s]
    charts = []
    for group, key, label in ((closed, "concurrency", "concurrency (requests in flight)"),
                              (opened, "rate", "offered rate (requests/s)")):
        if not group:
            continue
        xs = [float(s[key]) for s in group]
        metric = "ttft_ms" if stream else "e2e_ms"
        name = "TTFT" if stream else "latency"
        charts.append(line_chart(f"{name} percentiles against {key}", xs,
                                 {f"{name} {p}": [s[metric][p] for s in group] for p in ("p50", "p90", "p99")},
                                 label, "milliseconds"))
        charts.append(line_chart(f"throughput against {key}", xs,
                                 {"requests/s": [s["rps"] for s in group],
                                  "goodput/s": [s["goodput"]["rps"] for s in group]}, label, "requests per second"))
        charts.append(line_chart(f"output tokens against {key}", xs, {"tokens/s": [s["output_tps"] for s in group]},
                                 label, "output tokens per second"))
    failing = [s for s in steps if s["failed"]]
    if failing:
        charts.append(hbar("failed requests by kind, per step",
                           [Bar(f"concurrency {s['concurrency']}" if "concurrency" in s else f"rate {s['rate']:g}/s",
                                sorted(s["failed"].items())) for s in failing], "requests"))
    rows = []
    knee = (sweep or {}).get("knee")
    for s in steps:
        step = f"concurrency {s['concurrency']}" if "concurrency" in s else f"rate {s['rate']:g}/s"
        if knee is not None and s.get("concurrency") == knee["concurrency"]:
            step += " (the knee)"
        ttft, e2e, itl, tpot = s["ttft_ms"], s["e2e_ms"], s["itl_ms"], s["tpot_ms"]
        rows.append(f"<tr><td>{escape(step)}</td><td>{s['requests']}</td><td>{s['ok']}</td>"
                    f"<td>{escape(failures_text(s['failed']))}</td><td>{s['rps']:.1f}</td>"
                    f"<td>{s['output_tps']:.0f}</td><td>{_p(ttft, 'p50')} / {_p(ttft, 'p99')}</td>"
                    f"<td>{_p(itl, 'p50')} / {_p(itl, 'p99')}</td><td>{_p(tpot, 'p50')}</td>"
                    f"<td>{_p(e2e, 'p50')} / {_p(e2e, 'p99')}</td><td>{_share(s['goodput']['share'])}</td></tr>")
    extra = f'<p id="warmup">{escape(warmup_text(warmup))}</p>' if settings else ""
    if sweep:
        extra += f'<p id="knee"><b>{escape(knee_text(sweep))}</b><br>{escape(rule_text(sweep))}</p>'
    warning = ('<p class="warn">Measured against k2probe\'s built-in emulator: these figures describe the pipeline, '
               'not a model.</p>') if emulated else ""
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>k2probe bench — {escape(route)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1000px}}td,th{{border:1px solid #ccc;padding:4px 8px}}
table{{border-collapse:collapse}}.warn{{background:#fff8e1;border:1px solid #f9a825;padding:8px}}
svg{{display:block;margin:12px 0}}</style></head><body>
<h1>k2probe bench — route {escape(route)}, run {escape(run_id[:8])}</h1>{warning}
<p id="when">{escape(_when(started_at))}</p>{f'<p id="settings">{escape(settings_text(settings))}</p>' if settings else ''}
{extra}
<table id="steps"><tr><th>step</th><th>requests</th><th>ok</th><th>failed (by kind)</th><th>req/s</th><th>tokens/s</th>
<th>TTFT p50 / p99 (ms)</th><th>ITL p50 / p99 (ms)</th><th>TPOT p50 (ms)</th><th>latency p50 / p99 (ms)</th>
<th>goodput</th></tr>{''.join(rows)}</table>
{''.join(charts)}</body></html>"""
    return html


def _when(started_at: float | None) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp(started_at, datetime.UTC) if started_at else datetime.datetime.now(
        datetime.UTC)
    return f"measured {moment:%Y-%m-%d %H:%M} UTC"


def _p(figures: dict[str, Any], key: str) -> str:
    value = figures.get(key)
    return "–" if value is None else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"
