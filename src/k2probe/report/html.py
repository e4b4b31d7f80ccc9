"""Self-contained HTML reports (jinja2): steps with outcomes, and charts of each call's timings as inline SVG. The
calls come from the store, never from a command's memory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from k2probe import __version__
from k2probe.core.redact import Redactor
from k2probe.core.untrusted import html_text
from k2probe.report.charts import CallBar, call_bars


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` of a page: a string's control characters made visible before autoescape escapes it; a
    chart already built as safe markup (`|safe`) is left as it is."""
    return html_text(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def environment() -> Environment:
    """The pages' jinja2 environment: autoescape on for .html and .j2 templates, every value through `_finalize`."""
    return Environment(loader=PackageLoader("k2probe", "templates"), autoescape=select_autoescape(["html", "j2"]),
                       finalize=_finalize)


_env = environment()


EXPECTS = re.compile(r"expects an? (\d{3})")


def expected_refusal(call: dict[str, Any]) -> bool:
    """A call that was refused as its check wanted (a doctor probe that `expects a 400` and got it): a pass."""
    wanted = EXPECTS.search(str(call.get("purpose") or ""))
    return wanted is not None and call.get("status") == int(wanted.group(1))


def call_chart(calls: list[dict[str, Any]]) -> str:
    """Every call's latency as a bar with its TTFT marked, on a millisecond axis; expected refusals apart from
    failures."""
    bars = []
    for i, c in enumerate(calls):
        expected = expected_refusal(c)
        kind = "expected" if expected else ("error" if c["error_type"] else "ok")
        note = f"HTTP {c['status']}, as expected" if expected else (c["error_type"] or "")
        bars.append(CallBar(f"#{i + 1} {c['purpose'] or c['endpoint']}{' (stream)' if c['stream'] else ''}",
                            c["latency_ms"] or 0.0, c["ttft_ms"], kind, note))
    return call_bars("calls: end-to-end latency and time to first token", bars)


def write_page(path: Path, html: str) -> Path:
    """A page written where asked (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def write_report(path: Path, title: str, steps: list[dict[str, Any]], calls: list[dict[str, Any]],
                 redactor: Redactor, *, emulated: bool, fixes: dict[str, str] | None = None,
                 when: str | None = None) -> Path:
    return write_page(path, report_page(title, steps, calls, redactor, emulated=emulated, fixes=fixes, when=when))


def report_page(title: str, steps: list[dict[str, Any]], calls: list[dict[str, Any]], redactor: Redactor, *,
                emulated: bool, fixes: dict[str, str] | None = None, when: str | None = None) -> str:
    """The quickstart page: each step (a failing one with its fix), the calls drawn and listed."""
    shown = [{**s, "fix": (fixes or {}).get(str(s.get("id")), "")} for s in steps]
    rows = [{**c, "expected": expected_refusal(c)} for c in calls]
    html = _env.get_template("report.html.j2").render(
        title=title, version=__version__, steps=shown, calls=rows, chart=call_chart(calls), emulated=emulated,
        when=when)
    return redactor.text(html)
