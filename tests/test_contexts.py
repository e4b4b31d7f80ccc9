"""The two contexts, one lifecycle each: a route context serves an emulated route only while it is open; a run context
ends its run `finished` with its summary, `interrupted` on Ctrl-C, `error` on anything else."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from k2probe.api import command_contexts, route_context
from k2probe.core.results import Run
from k2probe.diagnose.smoke import run_smoke
from k2probe.recording.store import Store


def _run_row(run_id: str) -> Run:
    store = Store()
    try:
        return store.find_run(run_id)
    finally:
        store.dispose()


def test_a_route_context_serves_an_emulated_route_only_while_open(workdir):
    with route_context() as routed:  # nothing configured: the built-in emulator
        url = routed.emulator_url
        assert url is not None and routed.route.base_url == url
        assert any(url in line for line in routed.notices), routed.notices
        answer = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {routed.route.key()}"}, timeout=10)
        assert answer.status_code == 200, answer.text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/models", timeout=2)


def test_a_run_records_the_route_s_calls_and_finishes_with_its_summary(workdir):
    with command_contexts("smoke") as (routed, run):
        result = asyncio.run(run_smoke(routed, run))
        run.summary = {"ok": result.known_good is not None}
    row = _run_row(run.run_id)
    assert row.status == "finished" and row.command == "smoke" and row.route == routed.route.name
    assert row.summary == {"calls": run.call_count, "ok": True} and run.call_count >= 1, row
    assert row.config["profile_how"] == routed.profile_how  # the route's profile, and how it was chosen


@pytest.mark.parametrize(("raised", "status"), [(KeyboardInterrupt, "interrupted"), (RuntimeError, "error")])
def test_a_run_that_does_not_end_well_says_how_it_ended(workdir, raised, status):
    with pytest.raises(raised), command_contexts("smoke") as (_, run):
        run.summary = {"kept": True}
        raise raised()
    row = _run_row(run.run_id)
    assert row.status == status and row.summary == {"calls": 0, "kept": True}, row
