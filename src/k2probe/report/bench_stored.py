"""A bench run's page from the store (`k2probe report RUN`): the sweep's kept summary handed to the bench page's own
writer (report/bench_html.py), so a bench run has one renderer whether drawn as it ends or later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k2probe.core.results import Run
from k2probe.report.bench_html import bench_page
from k2probe.report.html import write_page


def _streamed(steps: list[dict[str, Any]]) -> bool:
    """Whether the sweep streamed, from its figures when the run did not keep its settings (TTFT measured)."""
    return any((s.get("ttft_ms") or {}).get("n") for s in steps)


def write_stored_bench(run: Run, path: Path) -> Path:
    return write_page(path, stored_bench_page(run))


def stored_bench_page(run: Run) -> str:
    summary = run.summary or {}
    steps = list(summary.get("steps") or [])
    settings = summary.get("settings") or run.config.get("bench")
    route = run.config.get("route") or {}
    stream = bool(settings.get("stream", True)) if isinstance(settings, dict) else _streamed(steps)
    return bench_page(run.route or str(route.get("name") or ""), run.id, steps, emulated=bool(route.get("emulated")),
                      stream=stream, settings=settings if isinstance(settings, dict) else None,
                      started_at=run.started_at,
                      warmup=summary.get("warmup") if isinstance(summary.get("warmup"), dict) else None,
                      sweep=summary.get("sweep") if isinstance(summary.get("sweep"), dict) else None)
