"""`k2probe quickstart` rendered: each step's line as it ends, and the HTML page of the whole run (written when the run
ends, and again from the store by `k2probe report RUN`) — a failing step with its fix."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.text import Text

from k2probe.contexts import RouteContext, RunContext
from k2probe.core.config import home
from k2probe.core.failures import Failure, fix_for
from k2probe.core.results import Run
from k2probe.diagnose.quickstart import QuickstartResult, Step
from k2probe.recording.store import Store
from k2probe.report import terminal as render
from k2probe.report.html import expected_refusal, report_page, write_page, write_report

MARK = {"pass": ("✔", "green"), "warn": ("!", "yellow"), "fail": ("✘", "bold red")}
PURPOSES = {"smoke": "smoke", "streaming": "quickstart: streaming", "multimodal": "quickstart: screenshot review",
            "agent": "agent step"}  # the calls each step made, by the start of their purpose
OTHER_FIXES = {
    "agent": "the model's work did not pass the task's hidden tests: read its transcript (`k2probe report` on the "
             "agent run, or the trajectory file named above)",
    "snippets": "run the snippet named above by hand (python, node or sh) to see its error",
    "multimodal": "the route answered without text: check that the model takes images (doctor's media checks)",
}


def show_step(step: Step) -> None:
    """One step's line: its mark, its name, what happened."""
    mark, style = MARK[step.status]
    render.out.print(Text(f"{mark} {step.id:<10} ", style=style), Text(step.detail))


def step_fixes(steps: list[dict[str, Any]], calls: list[dict[str, Any]], base_url: str | None,
               key_env: str | None = None) -> dict[str, str]:
    """The fix for each step that did not pass: doctor's own for its failed checks, else the fix for the cause of
    the step's first failed call (core/failures.py), else what a person should look at."""
    fixes: dict[str, str] = {}
    for step in steps:
        sid = str(step.get("id"))
        if step.get("status") == "pass":
            continue
        if sid == "doctor":
            checks = (step.get("data") or {}).get("checks") or []
            said = [f"{c['id']}: {c['fix']}" for c in checks if c.get("status") == "fail" and c.get("fix")]
            if said:
                fixes[sid] = "; ".join(said)
            continue
        prefix = PURPOSES.get(sid)
        failed = next((c for c in calls if prefix and str(c.get("purpose") or "").startswith(prefix)
                       and c.get("error_type") and not expected_refusal(c)), None)
        if failed is not None:
            failure = Failure(failed.get("status"), str(failed["error_type"]), str(failed.get("error_message") or ""))
            fix = fix_for(failure.cause, base_url, key_env=key_env)
            if fix:
                fixes[sid] = fix
                continue
        if sid == "snippets" and "no known-good record" in str(step.get("detail")):
            fixes[sid] = "smoke failed, so there is no known-good request to replay: fix the smoke step first"
        elif step.get("status") == "fail" and sid in OTHER_FIXES:
            fixes[sid] = OTHER_FIXES[sid]
    return fixes


def _when(started_at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at))


def write_quickstart_report(result: QuickstartResult, routed: RouteContext, run: RunContext) -> Path:
    """The HTML report of the run (its steps and every call), in K2PROBE_HOME/reports/."""
    path = home() / "reports" / f"quickstart-{run.run_id[:8]}.html"
    steps = [asdict(s) for s in result.steps]
    calls = run.store.calls(run.run_id, with_messages=False)
    fixes = step_fixes(steps, calls, routed.route.base_url, routed.route.api_key_env)
    return write_report(path, f"k2probe quickstart — route {routed.route.name}", steps, calls, run.redactor,
                        emulated=routed.route.emulated, fixes=fixes, when=_when(time.time()))


def write_stored_quickstart(store: Store, run: Run, path: Path) -> Path:
    return write_page(path, stored_quickstart_page(store, run))


def stored_quickstart_page(store: Store, run: Run) -> str:
    """The same page for a finished quickstart run, from the store alone (its steps are in the run's summary)."""
    route = run.config.get("route") or {}
    steps = list((run.summary or {}).get("step_outcomes") or [])
    if not steps:
        steps = [{"id": "steps", "status": "warn", "data": {},
                  "detail": "this run's steps were not recorded (an earlier k2probe): only its calls are shown"}]
    calls = store.calls(run.id, with_messages=False)
    fixes = step_fixes(steps, calls, route.get("base_url"), route.get("api_key_env"))
    return report_page(f"k2probe quickstart — route {run.route or route.get('name') or ''}", steps, calls,
                       store.redactor, emulated=bool(route.get("emulated")), fixes=fixes, when=_when(run.started_at))
