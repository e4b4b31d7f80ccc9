"""The store on a real PostgreSQL server, by K2PROBE_DB_URL: the same rows as on SQLite, nothing on disk locally."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .conftest import route_env
from .pg import postgres_server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_commands_record_into_postgres(cli, emulator, workdir: Path, pg_url):
    env = {**route_env(emulator(faults={"rate_limit": 0.5}, seed=1, retry_after_s=0.01)), "K2PROBE_DB_URL": pg_url}
    assert cli("smoke", env=env).code == 0
    assert cli("chat", "hi", "--stream", env=env).code == 0
    snippet = cli("snippet", "--lang", "python", env=env)
    assert snippet.code == 0 and "parse_total" in snippet.stdout  # the known-good record came back from PostgreSQL
    agent = cli("agent", "--task", "roman", env={"K2PROBE_DB_URL": pg_url})
    assert agent.code == 0, agent.stderr
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        commands = [r[0] for r in conn.execute(text("select command from runs order by started_at"))]
        calls = conn.execute(text("select count(*), sum(case when status = 429 then 1 else 0 end) from calls")).one()
        attempt = conn.execute(text("select status, steps from attempts")).one()
        steps = conn.execute(text("select count(*) from steps")).scalar()
        shape = conn.execute(text("select record from known_good")).scalar()
    engine.dispose()
    assert commands[:3] == ["smoke", "chat", "agent"]
    assert calls[0] >= 2 + 5 and calls[1] >= 1  # retried 429s are rows too
    assert attempt == ("passed", 5) and steps == 5
    assert "choices[].message.reasoning_content" in shape["response_shape"]
    assert not (workdir / "home" / "k2probe.db").exists()


def test_a_bad_database_url_is_one_clear_line(cli, workdir: Path):
    result = cli("chat", "hi", env={"K2PROBE_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("k2probe:") == 1 and "cannot open the store" in result.stderr


def test_the_viewer_reads_a_postgres_store_a_huge_answer_cut_and_streamed(cli, workdir: Path, pg_url):
    import json
    import re
    import shutil

    import httpx

    from .test_view import Viewer

    if not shutil.which("bwrap"):
        pytest.skip("the sandbox needs bubblewrap")
    env = {"K2PROBE_DB_URL": pg_url}
    body = "    return 1\n" + "# padding é\n" * 200_000
    (workdir / "samples.jsonl").write_text(json.dumps({"task_id": "HumanEval/0", "completion": body}) + "\n")
    ran = cli("eval", "humaneval", "--samples", "samples.jsonl", "--json", env=env, timeout=300)
    assert ran.code == 0, ran.stderr
    run_id = ran.json()["run_id"]
    view = Viewer(env=env)
    try:
        with httpx.Client(base_url=view.url, timeout=60) as http:
            page = http.get(f"/runs/{run_id}", params={"outcome": "failed"}).text
            link = re.search(rf'href="(/runs/{run_id}/samples/[0-9a-f-]+)"', page)
            assert link
            sample = http.get(link.group(1)).text
            assert f"shown: the first 20000 characters of {len(body.encode())} bytes" in sample
            assert http.get(link.group(1) + "/answer.txt").text == body
    finally:
        view.stop()
