"""The proxy run's page: one self-contained HTML file (no script, no CDN) built from the store alone — what the run
measured (eval's metrics of its calls), then per session each request with its findings, their evidence, the fix and
what was repaired."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from k2probe import __version__
from k2probe.core.stats import percentile
from k2probe.eval import metrics as eval_metrics
from k2probe.recording import queries
from k2probe.recording.store import Store
from k2probe.report.charts import histogram
from k2probe.report.evaluation import ROWS
from k2probe.report.html import environment, write_page

_env = environment()
SKIPPED_ROWS = ("samples", "pass@", "accepted rate", "tool-call trigger", "tool-call arguments", "error rate",
                "cost per accepted")  # a session has no verdict: what it cost in all is shown instead


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def build(store: Store, run_id: str) -> dict[str, Any]:
    """Everything the page shows, read from the store."""
    run = store.find_run(run_id)
    labels = {s.id: s.task_id for s in store.samples(run.id)}
    findings_by_call: dict[int, list[dict[str, Any]]] = defaultdict(list)
    findings = store.findings(run.id)
    for f in findings:
        findings_by_call[f["request"]].append(f)
    sessions: dict[str, dict[str, Any]] = {}
    for call in store.calls(run.id, with_messages=False):
        label = labels.get(call["sample_id"] or "", "no session")
        session = sessions.setdefault(label, {"label": label, "calls": [], "findings": 0})
        found = findings_by_call.get(call["step"] or -1, [])
        session["findings"] += len(found)
        session["calls"].append({**call, "findings": found, "ttft": _ms(call["ttft_ms"]),
                                 "latency": _ms(call["latency_ms"])})
    overall = eval_metrics.compute(store, run.id).root.get(eval_metrics.OVERALL)
    metrics = [] if overall is None else [(label, read(overall)) for label, read in ROWS
                                          if not label.startswith(SKIPPED_ROWS)]
    if overall is not None:
        total = overall.cost_per_accepted_usd.total_cost_usd
        metrics.append(("cost in all", "unknown (a call had no price)" if total == "unknown" else
                        "–" if total is None else f"${total:.6f}"))
        ttfts = [c["ttft_ms"] for s in sessions.values() for c in s["calls"] if c["ttft_ms"] is not None]
        metrics.append(("TTFT p50 / p95 (streamed calls)",
                        f"{_ms(percentile(ttfts, 50))} / {_ms(percentile(ttfts, 95))} (n={len(ttfts)})"))
    latencies = [v for values in queries.call_latencies(store, run.id).values() for v in values]
    return {
        "run": run, "mode": (run.config or {}).get("mode", "observe"), "version": __version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at)),
        "emulated": bool(((run.config or {}).get("route") or {}).get("emulated")),
        "calls": [c for s in sessions.values() for c in s["calls"]], "sessions": list(sessions.values()),
        "findings": findings, "by_kind": sorted(Counter(f["kind"] for f in findings).items()),
        "would_400": sum(1 for f in findings if f["would_400"]), "repaired": sum(1 for f in findings if f["repaired"]),
        "metrics": metrics,
        "charts": [histogram("latency per call", latencies, "end-to-end latency (ms)")] if latencies else [],
    }


def write_proxy_report(store: Store, run_id: str, path: Path) -> Path:
    return write_page(path, proxy_page(store, run_id))


def proxy_page(store: Store, run_id: str) -> str:
    """The proxy run `run_id`'s page (redacted as every page is)."""
    return store.redactor.text(_env.get_template("proxy.html.j2").render(**build(store, run_id)))
