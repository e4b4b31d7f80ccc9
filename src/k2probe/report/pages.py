"""One page per kind of run, from the store: what `k2probe report` writes to a file and `k2probe view` serves, by the
same renderer, so the two never drift."""

from __future__ import annotations

from pathlib import Path

from k2probe.core.errors import UsageError
from k2probe.core.results import Run
from k2probe.recording.store import Store
from k2probe.report.html import write_page

REPORTED = ("eval", "agent", "bench", "quickstart", "proxy")  # the kinds of run a page is drawn for


def run_page(store: Store, run: Run) -> str:
    """The run's self-contained page (UsageError for a kind of run that has none)."""
    if run.command == "eval":
        from k2probe.report.evaluation_html import eval_page

        return eval_page(store, run.id)
    if run.command == "agent":
        from k2probe.report.agent_html import agent_page

        return agent_page(store, run.id)
    if run.command == "bench":
        from k2probe.report.bench_stored import stored_bench_page

        return stored_bench_page(run)
    if run.command == "quickstart":
        from k2probe.report.quickstart import stored_quickstart_page

        return stored_quickstart_page(store, run)
    if run.command == "proxy":
        from k2probe.report.proxy_html import proxy_page

        return proxy_page(store, run.id)
    raise UsageError(f"run {run.id[:8]} is a `{run.command}` run: `report` draws {', '.join(REPORTED)} runs",
                     fix="see it with: k2probe show " + run.id[:8])


def write_run_page(store: Store, run: Run, path: Path) -> Path:
    return write_page(path, run_page(store, run))
