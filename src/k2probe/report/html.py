"""Self-contained HTML reports (jinja2): steps with outcomes, and charts of each call's timings as inline SVG. The
calls come from the store, never from a command's memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from k2probe import __version__
from k2probe.core.redact import Redactor

_env = Environment(loader=PackageLoader("k2probe", "templates"), autoescape=select_autoescape(["html", "j2"]))


def bars(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One bar per call: end-to-end latency, with TTFT marked, scaled to the slowest call."""
    longest = max((c["latency_ms"] or 0.0 for c in calls), default=0.0) or 1.0
    return [{"label": f"#{i + 1} {c['purpose'] or c['endpoint']}{' (stream)' if c['stream'] else ''}",
             "latency_ms": c["latency_ms"] or 0.0, "ttft_ms": c["ttft_ms"],
             "width": 100.0 * (c["latency_ms"] or 0.0) / longest,
             "ttft_width": 100.0 * (c["ttft_ms"] or 0.0) / longest,
             "error": c["error_type"]} for i, c in enumerate(calls)]


def write_report(path: Path, title: str, steps: list[dict[str, Any]], calls: list[dict[str, Any]],
                 redactor: Redactor, *, emulated: bool) -> Path:
    html = _env.get_template("report.html.j2").render(
        title=title, version=__version__, steps=steps, calls=calls, bars=bars(calls), emulated=emulated)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redactor.text(html), encoding="utf-8")
    return path
