"""An agent run's page, from the store alone: the task, the verdict of its hidden tests with the failing tests'
lines, the patch, every step of the transcript (reasoning collapsed, tool calls with their arguments and results),
and tokens, cost and latency. Self-contained: no script, nothing fetched."""

from __future__ import annotations

import time
from pathlib import Path

from k2probe import __version__
from k2probe.recording.store import Store
from k2probe.report.html import environment, write_page
from k2probe.report.transcript import attempt_views

_env = environment()


def write_agent_report(store: Store, run_id: str, path: Path) -> Path:
    return write_page(path, agent_page(store, run_id))


def agent_page(store: Store, run_id: str) -> str:
    """An agent run's page: the task, each attempt's transcript, verdict, patch and cost."""
    run = store.find_run(run_id)
    route = run.config.get("route") or {}
    html = _env.get_template("agent.html.j2").render(
        run=run, attempts=attempt_views(store, run.id), version=__version__, emulated=bool(route.get("emulated")),
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at)))
    return store.redactor.text(html)
