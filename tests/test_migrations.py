"""The store's schema goes through Alembic: a 0.1 database file upgrades in place; messages and prefixes stored once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .conftest import route_env

OLD_DUMP = Path(__file__).parent / "data" / "store-0.1.sql"  # a store k2probe 0.1 wrote (smoke, agent, chat, review)


def _old_store(path: Path) -> Path:
    """The 0.1 store, rebuilt from its SQL dump (kept as text so the fixture is reviewable)."""
    with sqlite3.connect(path) as db:
        db.executescript(OLD_DUMP.read_text(encoding="utf-8"))
    return path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("select name from sqlite_master where type='table'")}


def _schema_drift(url: str) -> list[object]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from k2probe.recording.schema import Base

    engine = create_engine(url)
    with engine.connect() as connection:
        drift = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    return list(drift)


def test_the_head_constant_is_alembics_head():
    from k2probe.recording import migrate

    assert migrate.head() == migrate.HEAD


def test_a_new_store_is_created_by_the_migrations_and_matches_the_tables_in_code(tmp_path):
    from k2probe.recording import migrate
    from k2probe.recording.store import Store

    path = tmp_path / "new.db"
    Store(f"sqlite:///{path}").dispose()
    assert {"runs", "samples", "messages", "calls", "attempts", "steps", "reviews", "alembic_version"} <= _tables(path)
    with sqlite3.connect(path) as db:
        assert db.execute("select version_num from alembic_version").fetchone()[0] == migrate.HEAD
    assert _schema_drift(f"sqlite:///{path}") == []


def test_a_01_database_upgrades_in_place_and_keeps_everything(cli, emulator, workdir: Path):
    from k2probe.recording import migrate

    db = workdir / "home" / "k2probe.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    _old_store(db)
    with sqlite3.connect(db) as conn:
        before = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                  for t in ("runs", "calls", "attempts", "steps", "reviews", "known_good")}
    assert "alembic_version" not in _tables(db) and before["calls"] >= 5

    listed = cli("runs", "--json")
    assert listed.code == 0, listed.stderr
    runs = {r["command"]: r for r in listed.json()["runs"]}
    assert set(runs) == {"smoke", "agent", "chat"} and all(r["status"] == "finished" for r in runs.values())
    shown = cli("show", runs["agent"]["id"][:8], "--json")
    assert shown.code == 0, shown.stderr
    detail = shown.json()
    assert len(detail["calls"]) == 5 and detail["attempts"][0]["status"] == "passed"
    assert all(c["request"]["messages"][0]["role"] == "system" for c in detail["calls"])  # old inline requests
    assert _schema_drift(f"sqlite:///{db}") == []
    with sqlite3.connect(db) as conn:
        after = {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in before}
        assert conn.execute("select version_num from alembic_version").fetchone()[0] == migrate.HEAD
    assert after == before

    # …and new work goes into the upgraded file, its messages by reference
    server = emulator()
    chat = cli("chat", "after the upgrade", "--json", env=route_env(server))
    assert chat.code == 0, chat.stderr
    with sqlite3.connect(db) as conn:
        thread, request = conn.execute("select thread, request from calls order by id desc limit 1").fetchone()
        stored = conn.execute("select body from messages").fetchall()
    assert thread and "messages" not in json.loads(request)
    assert any("after the upgrade" in body for (body,) in stored)


def test_an_early_01_database_without_later_timing_columns_upgrades_too(tmp_path):
    from k2probe.core.records import CallRecord
    from k2probe.recording.store import Store

    path = _old_store(tmp_path / "early.db")
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
    assert _schema_drift(f"sqlite:///{path}") == []


def test_a_30_step_attempt_stores_at_most_twice_its_final_request(tmp_path):
    """Each step resends the whole conversation; stored once per message, the steps cost ≈ the last request."""
    from k2probe.core.records import CallRecord
    from k2probe.recording.store import Store

    path = tmp_path / "steps.db"
    store = Store(f"sqlite:///{path}")
    run_id = store.start_run("agent", "r", {})
    messages: list[dict[str, object]] = [{"role": "system", "content": "You fix repositories. " * 20},
                                         {"role": "user", "content": "Fix the failing test. " * 20}]
    request: dict[str, object] = {}
    for step in range(30):
        request = {"model": "kimi-k2.7-code", "messages": list(messages), "tools": [{"type": "function"}]}
        store.add_call(run_id, CallRecord(route="r", model="m", endpoint="/chat/completions", stream=False,
                                          request=request, attempt_id="a", step=step))
        messages += [{"role": "assistant", "content": "", "reasoning_content": f"step {step}: look " * 30,
                      "tool_calls": [{"id": f"c{step}", "type": "function",
                                      "function": {"name": "read_file", "arguments": '{"path": "x.py"}'}}]},
                     {"role": "tool", "tool_call_id": f"c{step}", "content": f"line {step}\n" * 60}]
    calls = store.calls(run_id)
    store.dispose()
    assert calls[-1]["request"] == json.loads(json.dumps(request))  # read back whole
    with sqlite3.connect(path) as db:
        stored = db.execute("select coalesce(sum(length(body)), 0) from messages").fetchone()[0]
        stored += db.execute("select sum(length(hash) + length(coalesce(parent, '')) + length(message) + 4) "
                             "from threads").fetchone()[0]
        stored += db.execute("select sum(length(request) + length(coalesce(thread, ''))) from calls").fetchone()[0]
    final = len(json.dumps(request))
    assert stored <= 2 * final, f"{stored} bytes stored for a final request of {final}"


def _tampered_store(workdir: Path, statement: str) -> Path:
    from k2probe.recording.store import Store

    path = workdir / "store.db"
    Store(f"sqlite:///{path}").dispose()  # a current store …
    with sqlite3.connect(path) as db:
        db.execute(statement)  # … then changed as a newer k2probe (or a damaged file) would leave it
    return path


def test_a_store_written_by_a_newer_k2probe_is_refused_with_the_revision_it_needs(cli, workdir: Path):
    path = _tampered_store(workdir, "UPDATE alembic_version SET version_num = '0099'")
    result = cli("runs", env={"K2PROBE_DB_URL": f"sqlite:///{path}"})
    assert result.code == 2, result.stderr
    assert "written by a newer k2probe (schema revision 0099" in result.stderr and "pip install -U" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    with sqlite3.connect(path) as db:  # nothing was done to it
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("0099",)


def test_a_store_missing_a_table_is_refused_at_open_not_mid_run(cli, workdir: Path):
    path = _tampered_store(workdir, "DROP TABLE samples")
    result = cli("eval", "humaneval", "--limit", "1", env={"K2PROBE_DB_URL": f"sqlite:///{path}"})
    assert result.code == 2, result.stderr
    assert "lacks table(s) samples" in result.stderr and "move that file aside" in result.stderr
    assert "disk space" not in result.stderr and "Traceback" not in result.stderr
