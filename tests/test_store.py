"""Every HTTP request is a call row in a real SQLite file (WAL), grouped into runs, without secrets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .conftest import route_env


def test_calls_and_runs_are_recorded(cli, emulator, workdir: Path):
    server = emulator(faults={"rate_limit": 0.5}, seed=1, retry_after_s=0.01)
    result = cli("chat", "hello there", "--stream", "--param", "temperature=0.3", "--json", env=route_env(server))
    assert result.code == 0, result.stderr
    data = result.json()
    assert "dropped temperature: temperature=0.3 dropped: fixed at 1 for kimi-k2.7-code" in data["changes"]
    db = workdir / "home" / "k2probe.db"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        run = conn.execute("select * from runs").fetchone()
        calls = conn.execute("select * from calls order by id").fetchall()
    assert run["command"] == "chat" and run["status"] == "finished" and run["tool_version"]
    assert json.loads(run["config"])["route"]["model"] == "kimi-k2.7-code"
    assert data["retries"] == len(calls) - 1 >= 1  # seed 1 rate-limits the first try
    first, last = calls[0], calls[-1]
    assert first["status"] == 429 and first["error_type"] == "rate_limit_reached_error" and first["retry_reason"]
    assert last["status"] == 200 and last["attempt"] == len(calls) - 1
    assert "temperature" not in json.loads(last["request"])  # the sanitised body is what is kept
    assert last["ttft_ms"] > 0 and last["ttfc_ms"] >= last["ttft_ms"] and last["latency_ms"] >= last["ttfc_ms"]
    assert last["reasoning_tokens"] > 0 and last["prompt_tokens"] > 0 and last["cost_usd"] > 0
    assert last["usage_location"] == "choices[0].usage" and last["finish_reason"] == "stop"
    assert {c["purpose"] for c in calls} == {"chat"}
    assert data["ttft_ms"] == last["ttft_ms"] and data["completion_tokens"] == last["completion_tokens"]


def test_a_store_written_before_pool_and_connect_timings_upgrades_in_place(tmp_path):
    """A database whose calls table predates pool_ms / connect_ms gets them, and its old rows stay readable."""
    import sqlite3

    from k2probe.core.records import CallRecord
    from k2probe.recording.store import Store

    path = tmp_path / "old.db"
    Store(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE calls DROP COLUMN pool_ms")
        db.execute("ALTER TABLE calls DROP COLUMN connect_ms")
    store = Store(f"sqlite:///{path}")
    run_id = store.start_run("chat", "r", {})
    store.add_call(run_id, CallRecord(route="r", model="m", endpoint="/chat/completions", stream=True, request={},
                                      pool_ms=1.5, connect_ms=2.5))
    calls = store.calls(run_id)
    store.dispose()
    assert calls[0]["pool_ms"] == 1.5 and calls[0]["connect_ms"] == 2.5
