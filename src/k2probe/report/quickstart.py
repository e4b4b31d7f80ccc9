"""`k2probe quickstart` rendered: each step's line as it ends, and the HTML report of the whole run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.text import Text

from k2probe.contexts import RouteContext, RunContext
from k2probe.core.config import home
from k2probe.diagnose.quickstart import QuickstartResult, Step
from k2probe.report import terminal as render
from k2probe.report.html import write_report

MARK = {"pass": ("✔", "green"), "warn": ("!", "yellow"), "fail": ("✘", "bold red")}


def show_step(step: Step) -> None:
    """One step's line: its mark, its name, what happened."""
    mark, style = MARK[step.status]
    render.out.print(Text(f"{mark} {step.id:<10} ", style=style), Text(step.detail))


def write_quickstart_report(result: QuickstartResult, routed: RouteContext, run: RunContext) -> Path:
    """The HTML report of the run (its steps and every call), in K2PROBE_HOME/reports/."""
    path = home() / "reports" / f"quickstart-{run.run_id[:8]}.html"
    return write_report(path, f"k2probe quickstart — route {routed.route.name}", [asdict(s) for s in result.steps],
                        run.store.calls(run.run_id, with_messages=False), run.redactor,
                        emulated=routed.route.emulated)
