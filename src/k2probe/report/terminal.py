"""Terminal output: tables and lines with rich; JSON documents on stdout for --json.

Everything printed goes through `SafeConsole`: it never reads rich markup or emoji codes in a string (model text such
as `[/INST]` or `arr[i]` is shown as it is) and every text segment passes `untrusted.terminal` (ESC, CSI, OSC, BEL,
backspace, a bare carriage return are shown as visible stand-ins), so no string from a model, a gateway, a route name
or a task id can crash a command, alter what is shown or act on the terminal. Styles are given as `style=`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from k2probe.core import untrusted

if TYPE_CHECKING:  # imported where used: `k2probe --help` must not load the request path
    from collections.abc import Iterable

    from k2probe.core.records import CallRecord
    from k2probe.core.redact import Redactor
    from k2probe.core.sanitize import Change
    from k2probe.diagnose.doctor import Diagnosis



class SafeConsole(Console):
    """A rich Console for untrusted text: strings are never parsed as markup or emoji codes, and control characters
    in any text segment become visible (rich's own control segments, e.g. a live display's cursor moves, pass)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, soft_wrap=True, **options)

    def render_str(self, text: str, *, style: str | Style = "", markup: bool | None = None,
                   emoji: bool | None = None, **options: Any) -> Text:
        return super().render_str(untrusted.terminal(text), style=style, markup=False, emoji=False, **options)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not segment.text:
                yield segment
            else:
                yield Segment(untrusted.terminal(segment.text), segment.style)


out = SafeConsole()
err = SafeConsole(stderr=True)


def shown(value: object, style: str = "") -> Text:
    """Untrusted text (a model's answer, a server's error, a tool's output, a task id) as a Text to print: verbatim,
    control characters visible. Use it, not Text(...), which silently deletes carriage returns and backspaces."""
    return Text(untrusted.terminal(str(value)), style=style)
STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def emit_json(document: Any, redactor: Redactor | None = None) -> None:
    """One JSON document on stdout and nothing else."""
    text = untrusted.json_document(json.dumps(document, indent=2, ensure_ascii=False, default=str))
    sys.stdout.write((redactor.text(text) if redactor else text) + "\n")
    sys.stdout.flush()


def notice(message: str) -> None:
    err.print(shown(message, "cyan"))


def changes(items: list[Change]) -> None:
    for change in items:
        style = "dim" if change.action in ("set", "note") else "yellow"
        err.print(shown(f"sanitiser: {change.line()}", style))


def media_notes(lines: list[str]) -> None:
    for line in lines:
        err.print(shown(f"media: {line}", "dim"))


def diagnosis(result: Diagnosis) -> None:
    from rich.table import Table

    table = Table(title=f"doctor: route {result.route}", show_lines=False)
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in result.checks:
        table.add_row(shown(check.id), shown(check.status, STATUS_STYLE.get(check.status, "")), shown(check.detail),
                      shown(check.fix))
    out.print(table)
    style = "green" if result.diagnosis == "ok" else "bold red"
    out.print(Text(f"diagnosis: {result.diagnosis}", style=style))


def figures_line(call: CallRecord) -> str:
    """core.records' line of a call's figures (kept there: activities put it in their results' details)."""
    from k2probe.core.records import figures_line as line

    return line(call)


class LivePrinter:
    """Prints a stream as it arrives: reasoning dimmed, then the answer. Redaction covers each part as a whole (a
    key split across chunks is still caught: see StreamRedactor), so a few characters show a chunk late. With stdout
    not a terminal (piped to a file or a program), the reasoning goes to stderr and stdout gets the answer alone."""

    def __init__(self) -> None:
        from k2probe.core.redact import StreamRedactor

        self.kind: str | None = None
        self.redactor = StreamRedactor()
        self.split = not out.is_terminal

    def _console(self, kind: str | None) -> Console:
        return err if self.split and kind == "reasoning" else out

    def __call__(self, kind: str, text: str) -> None:
        if kind != self.kind:
            self._flush()
            if self.kind is not None:  # the part before ends its line, where it was printed
                self._console(self.kind).print()
            if kind == "reasoning":
                self._console(kind).print(Text("thinking: ", style="dim italic"), end="")
            self.kind = kind
        self._show(self.redactor.feed(text))

    def _show(self, text: str) -> None:
        if text:
            self._console(self.kind).print(shown(text, "dim" if self.kind == "reasoning" else ""), end="")

    def _flush(self) -> None:
        self._show(self.redactor.finish())

    def finish(self) -> None:
        if self.kind is not None:
            self._flush()
            self._console(self.kind).print()
