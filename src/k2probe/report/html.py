"""Self-contained HTML reports (jinja2): steps with outcomes, and charts of each call's timings as inline SVG. The
calls come from the store, never from a command's memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from k2probe import __version__
from k2probe.core.redact import Redactor
from k2probe.core.untrusted import html_text


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` of a page: a string's control characters made visible before autoescape escapes it; a
    chart already built as safe markup (`|safe`) is left as it is."""
    return html_text(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def environment() -> Environment:
    """The pages' jinja2 environment: autoescape on for .html and .j2 templates, every value through `_finalize`."""
    return Environment(loader=PackageLoader("k2probe", "templates"), autoescape=select_autoescape(["html", "j2"]),
                       finalize=_finalize)


_env = environment()


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
