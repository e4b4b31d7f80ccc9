"""Input k2probe cannot honour is refused in one line, exit 2 — never silently ignored or read as something else."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _reviews(workdir: Path) -> int:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        return int(db.execute("select count(*) from reviews").fetchone()[0])


def test_run_ids_are_matched_as_text_never_as_patterns(cli, workdir: Path):
    assert cli("smoke").code == 0  # one run in the store
    for pattern in ("_", "%", "________", ""):
        result = cli("review", pattern, "--reject")
        assert result.code == 2 and "is not a run id" in result.stderr, (pattern, result.stderr)
    assert _reviews(workdir) == 0
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    assert cli("review", run_id[:6], "--reject").code == 0 and _reviews(workdir) == 1  # a real prefix still works


def test_accept_and_reject_together_are_refused(cli, workdir: Path):
    assert cli("smoke").code == 0
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    result = cli("review", run_id, "--accept", "--reject")
    assert result.code == 2 and "--accept and --reject together" in result.stderr
    assert _reviews(workdir) == 0


def test_agent_list_tasks_speaks_json_when_asked(cli):
    result = cli("agent", "--list-tasks", "--json")
    assert result.code == 0
    tasks = result.json()["tasks"]
    assert any(t["id"] == "parse-total" and t["suite"] == "basic" and t["title"] for t in tasks), tasks


def test_sigterm_ends_a_run_as_interrupted_in_one_line(emulator, workdir: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import SCRUB, route_env

    server = emulator(ttft_ms=3000)
    env = {**{k: v for k, v in os.environ.items() if k not in SCRUB}, **route_env(server)}
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "eval", "humaneval", "--limit", "4", "--json"],
                               cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while server.state.requests_seen < 2 and time.monotonic() < deadline:  # the route check, then a sample
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and err.strip().splitlines()[-1] == "k2probe: terminated (SIGTERM)", err
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        assert db.execute("select status, owner from runs").fetchall() == [("interrupted", None)]


def test_a_fifo_where_a_file_belongs_is_one_line_in_bounded_time(cli, workdir: Path):
    """Reading a FIFO waits for a writer that never comes, writing one waits for a reader: each is refused at once."""
    import os
    import shutil

    fifo = workdir / "pipe"
    os.mkfifo(fifo)
    suite = workdir / "fifo-suite"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "suite", suite)
    (suite / "leap-year" / "task.toml").unlink()
    os.mkfifo(suite / "leap-year" / "task.toml")
    cases = [
        (("routes",), {"K2PROBE_CONFIG": str(fifo)}, "the config file"),
        (("eval", "humaneval", "--samples", str(fifo)), {}, "--samples"),
        (("eval", "humaneval", "--limit", "1", "--html", str(fifo)), {}, "--html"),
        (("eval", "humaneval", "--limit", "1", "--junit", str(fifo)), {}, "--junit"),
        (("eval", str(suite)), {}, "task.toml"),
    ]
    for args, env, words in cases:
        result = cli(*args, env=env, timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.code == 2 and "FIFO" in lines[-1] and words in lines[-1], (args, result.stderr)
        assert "Traceback" not in result.stderr
    (workdir / "k2probe.toml").unlink(missing_ok=True)
    os.mkfifo(workdir / "k2probe.toml")
    result = cli("routes", timeout=60)
    assert result.code == 2 and "FIFO" in result.stderr, result.stderr


def test_runs_and_show_say_what_an_evaluation_did_and_on_which_routes(cli, emulator, workdir: Path):
    server = emulator()
    (workdir / "k2probe.toml").write_text(
        f"[routes.one]\nbase_url = '{server.base_url}'\napi_key_env = 'ONE_KEY'\n"
        f"[routes.two]\nbase_url = '{server.base_url}'\napi_key_env = 'TWO_KEY'\n")
    env = {"ONE_KEY": "sk-k2probe-emulator", "TWO_KEY": "sk-k2probe-emulator"}
    done = cli("eval", "humaneval", "--limit", "2", "--route", "one", "--route", "two", "--json", env=env, timeout=300)
    assert done.code == 0, done.stderr
    listed = cli("runs", env={**env, "COLUMNS": "250"}).stdout
    row = next(line for line in listed.splitlines() if done.json()["run_id"][:8] in line)
    assert "eval" in row and "one" in row and "suite=humaneval" in row and "4 passed / 0 failed / 0 error of 4" in row
    assert "routes=one,two" in row and "$" in row
    shown = cli("show", done.json()["run_id"][:8], env=env).stdout
    assert "routes one, two" in shown.splitlines()[0]


def test_chat_piped_writes_the_answer_alone_on_stdout(cli):
    for args in (("chat", "hi"), ("chat", "hi", "--stream")):
        result = cli(*args)
        assert result.code == 0, result.stderr
        assert result.stdout.strip() == "Emulated answer to: hi", result.stdout  # no reasoning, no figures
        assert "thinking: I will examine the request" in result.stderr and "latency" in result.stderr


def test_resume_refuses_options_that_contradict_the_run_it_finishes(cli, emulator, workdir: Path):
    from .conftest import route_env

    env = route_env(emulator())
    ran = cli("eval", "humaneval", "--limit", "2", "--epochs", "2", "--json", env=env, timeout=300)
    assert ran.code == 0, ran.stderr
    run = ran.json()["run_id"][:8]
    for args, said in ((("basic",), "SUITE basic is not its humaneval"), (("--route", "b"), "--route b is not its"),
                       (("--epochs", "5"), "--epochs 5 is not its 2"), (("--limit", "9"), "--limit 9 is not its 2")):
        refused = cli("eval", *args, "--resume", run, env=env)
        assert refused.code == 2 and said in refused.stderr and "drop" in refused.stderr, (args, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1
    same = cli("eval", "humaneval", "--epochs", "2", "--concurrency", "3", "--resume", run, env=env, timeout=300)
    assert same.code == 0, same.stderr  # what agrees with the run, or only says how fast, is taken
