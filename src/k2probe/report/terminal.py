"""Terminal output: tables and lines with rich; JSON documents on stdout for --json."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:  # imported where used: `k2probe --help` must not load the request path
    from k2probe.core.records import CallRecord
    from k2probe.core.redact import Redactor
    from k2probe.core.sanitize import Change
    from k2probe.diagnose.doctor import Diagnosis

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def emit_json(document: Any, redactor: Redactor | None = None) -> None:
    """One JSON document on stdout and nothing else."""
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write((redactor.text(text) if redactor else text) + "\n")
    sys.stdout.flush()


def notice(message: str) -> None:
    err.print(Text(message, style="cyan"))


def changes(items: list[Change]) -> None:
    for change in items:
        style = "dim" if change.action in ("set", "note") else "yellow"
        err.print(Text(f"sanitiser: {change.line()}", style=style))


def media_notes(lines: list[str]) -> None:
    for line in lines:
        err.print(Text(f"media: {line}", style="dim"))


def diagnosis(result: Diagnosis) -> None:
    from rich.table import Table

    table = Table(title=f"doctor: route {result.route}", show_lines=False)
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in result.checks:
        table.add_row(check.id, Text(check.status, style=STATUS_STYLE.get(check.status, "")), check.detail, check.fix)
    out.print(table)
    style = "green" if result.diagnosis == "ok" else "bold red"
    out.print(Text(f"diagnosis: {result.diagnosis}", style=style))


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def figures_line(call: CallRecord) -> str:
    from k2probe.core.records import figures

    f = figures(call)
    cost = "cost unknown" if f["cost_usd"] is None else f"${f['cost_usd']:.6f}"
    tps = "–" if f["tokens_per_s"] is None else f"{f['tokens_per_s']:.0f} tok/s"
    parts = []
    if call.stream:
        parts += [f"TTFT {_ms(f['ttft_ms'])}", f"first content {_ms(f['ttfc_ms'])}", tps]
    parts += [f"latency {_ms(f['latency_ms'])}",
              f"tokens {f['prompt_tokens']} in / {f['completion_tokens']} out ({f['reasoning_tokens']} reasoning, "
              f"{f['cached_tokens']} cached)", cost]
    return " · ".join(parts)


class LivePrinter:
    """Prints a stream as it arrives: reasoning dimmed, then the answer."""

    def __init__(self) -> None:
        self.kind: str | None = None

    def __call__(self, kind: str, text: str) -> None:
        if kind != self.kind and self.kind is not None:
            out.print()
        if kind != self.kind and kind == "reasoning":
            out.print(Text("thinking: ", style="dim italic"), end="")
        self.kind = kind
        out.print(Text(text, style="dim" if kind == "reasoning" else ""), end="")

    def finish(self) -> None:
        if self.kind is not None:
            out.print()
