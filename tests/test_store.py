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
