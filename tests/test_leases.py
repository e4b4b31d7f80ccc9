"""One owner per run: a resume of a run whose process still works on it, or a second resume at the same time, is
refused with one line (exit 2), so no sample is sent and judged twice."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import SCRUB, route_env
from .evalstate import eval_state

needs_bwrap = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="eval verifies in the sandbox")
SAMPLES = 16


def _env(server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update(route_env(server))
    return env


def _eval(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "k2probe", "eval", *args], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _started(workdir: Path, process: subprocess.Popen[str], done_at_least: int) -> str:
    """Wait until the run planned its samples and finished `done_at_least` of them; its id."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        run_id, samples = eval_state(workdir)
        if run_id and len(samples) == SAMPLES and sum(o != "pending" for o, _ in samples.values()) >= done_at_least:
            return run_id
        time.sleep(0.05)
    pytest.fail("the run ended (or never started) before it could be caught running")


@needs_bwrap
def test_a_resume_of_a_run_whose_process_still_runs_is_refused(cli, emulator, workdir):
    server = emulator(ttft_ms=400, seed=4)
    first = _eval(workdir, _env(server), "humaneval", "--limit", str(SAMPLES), "--concurrency", "1")
    try:
        run_id = _started(workdir, first, 1)
        result = cli("eval", "--resume", run_id[:8], env=route_env(server), timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert result.code == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "is being run by another k2probe" in line and f"pid {first.pid}" in line
    assert "Traceback" not in result.stderr

    # its process is dead now: the run is resumed, and finishes
    done = cli("eval", "--resume", run_id[:8], "--json", env=route_env(server), timeout=300)
    assert done.code == 0, done.stderr
    assert {s["outcome"] for s in done.json()["samples"]} <= {"passed", "failed"}


@needs_bwrap
def test_two_resumes_at_once_judge_every_sample_exactly_once(emulator, workdir):
    """kill -9 a run, then start two resumes of it together: one works on it, the other is refused; each sample
    without a result is sent once (counted in the store), each with one is never sent again."""
    server = emulator(ttft_ms=250, seed=5)
    env = _env(server)
    first = _eval(workdir, env, "humaneval", "--limit", str(SAMPLES), "--concurrency", "2")
    run_id = _started(workdir, first, 2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    _, before = eval_state(workdir)
    pending = {sid for sid, (outcome, _) in before.items() if outcome == "pending"}
    assert pending and len(pending) < SAMPLES

    resumes = [_eval(workdir, env, "--resume", run_id[:8]) for _ in range(2)]
    codes, errors = [], []
    for process in resumes:
        _, err = process.communicate(timeout=300)
        codes.append(process.returncode)
        errors.append(err)
    assert sorted(codes) in ([0, 2], [0, 0]), errors  # [0, 0] only if one ended before the other began
    for code, err in zip(codes, errors, strict=True):
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and "is being run by another k2probe" in err, err

    _, after = eval_state(workdir)
    assert all(outcome in ("passed", "failed") for outcome, _ in after.values())
    sent = {sid: after[sid][1] - before[sid][1] for sid in after}
    assert {sid: n for sid, n in sent.items() if sid in pending} == dict.fromkeys(pending, 1)
    assert all(n == 0 for sid, n in sent.items() if sid not in pending)
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        status, owner = db.execute("select status, owner from runs where id = ?", (run_id,)).fetchone()
    assert status == "finished" and owner is None  # released at the end: anyone may look at or resume it


def _run_held_by(owner: str, lease_at: float | None, url: str | None = None) -> str:
    """A run in the store as another process left it (what a second host or a dead process would have written)."""
    from sqlalchemy import text

    from k2probe.recording.store import Store

    store = Store(url)
    try:
        run_id = store.start_run("eval", "samples", {"suite": "humaneval"})
        with store.engine.begin() as connection:
            connection.execute(text("update runs set owner = :owner, lease_at = :at where id = :id"),
                               {"owner": owner, "at": lease_at, "id": run_id})
    finally:
        store.dispose()
    return run_id


def test_leases_of_dead_processes_and_stale_hosts_are_taken_over(workdir):
    from k2probe.core.errors import ConfigError
    from k2probe.core.liveness import token
    from k2probe.recording.store import LEASE_STALE_S, Store

    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead_owner = token(gone.pid)
    gone.kill()
    gone.wait()
    alive_owner = token(os.getppid())  # pytest's parent (a shell) is alive on this host
    cases = {"dead here": (dead_owner, time.time(), True),
             "alive here": (alive_owner, time.time() - 10 * LEASE_STALE_S, False),
             "other host, stale": ("elsewhere.example:4242:99", time.time() - 2 * LEASE_STALE_S, True),
             "other host, fresh": ("elsewhere.example:4242:99", time.time() - 1, False)}
    assert socket.gethostname() != "elsewhere.example"
    for name, (owner, lease_at, taken) in cases.items():
        run_id = _run_held_by(owner, lease_at)
        store = Store()
        try:
            if taken:
                with store.lease(run_id):
                    assert store.find_run(run_id).owner == token(), name
                assert store.find_run(run_id).owner is None, name
            else:
                with pytest.raises(ConfigError, match="is being run by another k2probe"):
                    store.claim_run(run_id)
                assert store.find_run(run_id).owner == owner, name
        finally:
            store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, workdir) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{workdir / 'home' / 'k2probe.db'}"
        return
    from .pg import postgres_server

    with postgres_server() as url:
        yield url


def test_of_many_claims_at_once_exactly_one_wins(workdir, store_url):
    """Processes claiming the same free run at the same moment: the compare-and-set lets one through."""
    (workdir / "home").mkdir(exist_ok=True)
    run_id = _run_held_by("elsewhere.example:1:1", 0.0, store_url)  # stale: free to take
    script = ("import sys, time\nfrom k2probe.core.errors import ConfigError\nfrom k2probe.recording.store import Store\n"
              "store = Store(sys.argv[3])\nwhile time.time() < float(sys.argv[2]): time.sleep(0.001)\n"
              "try:\n    store.claim_run(sys.argv[1])\nexcept ConfigError as exc:\n    print(exc.line()); sys.exit(2)\n"
              "time.sleep(3)\n")  # stay alive while the others decide
    start = f"{time.time() + 4:.3f}"
    claims = [subprocess.Popen([sys.executable, "-c", script, run_id, start, store_url], cwd=workdir,
                               stdout=subprocess.PIPE, text=True) for _ in range(6)]
    codes = [p.wait(timeout=120) for p in claims]
    assert sorted(codes) == [0] + [2] * 5, codes
