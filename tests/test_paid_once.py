"""No answer paid for twice: an answer is kept (committed) the moment it arrives, before it is verified, so after
`kill -9` at any moment `--resume` verifies the kept answers and re-sends at most the requests that were in flight."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import SCRUB, route_env

pytestmark = pytest.mark.skipif(not __import__("shutil").which("bwrap"), reason="the sandbox needs bubblewrap")
SAMPLES, CONCURRENCY = 12, 4


def _samples(workdir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        return db.execute("select task_id, outcome from samples").fetchall()


# requests the server has seen when the run is killed (the route check is the first): early, midway, and once every
# sample's request has been sent
@pytest.mark.parametrize("kill_after", [5, 9, SAMPLES + 1])
def test_kill_9_then_resume_judges_every_sample_once_and_repeats_at_most_the_in_flight_requests(
        emulator, workdir: Path, kill_after: int):
    server = emulator()  # answers at once: verification (the sandbox) is the slow part, as with a real model
    env = {**{k: v for k, v in os.environ.items() if k not in SCRUB}, **route_env(server)}
    command = [sys.executable, "-m", "k2probe", "eval", "humaneval", "--limit", str(SAMPLES), "--concurrency",
               str(CONCURRENCY)]
    first = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while server.state.requests_seen < kill_after and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    sent_before = server.state.requests_seen
    run_id = sqlite3.connect(workdir / "home" / "k2probe.db").execute("select id from runs").fetchone()[0]
    resumed = subprocess.run([sys.executable, "-m", "k2probe", "eval", "--resume", run_id[:8]], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    samples = _samples(workdir)
    assert len(samples) == SAMPLES and {o for _, o in samples} == {"passed"}  # every sample once, judged
    asked = server.state.requests_seen - 2  # the route check of each process is no sample's request
    assert asked <= SAMPLES + CONCURRENCY, (sent_before, server.state.requests_seen)


def test_answers_kept_before_their_verdict_are_verified_on_resume_without_a_request(emulator, workdir: Path):
    """The mechanism, deterministically: a run stopped with 3 answers kept but not yet judged (as `kill -9` between
    an answer and its verdict leaves it) — its resume asks the route only for the other samples."""
    from k2probe.core.results import Usage
    from k2probe.recording.store import Store
    from k2probe.tasks.humaneval import problems

    server = emulator()
    env = {**{k: v for k, v in os.environ.items() if k not in SCRUB}, **route_env(server)}
    ids = list(problems())[:5]
    store = Store()
    try:
        run_id = store.start_run("eval", "env", {"eval": {"suite": "humaneval", "routes": [None], "epochs": 1,
                                                          "tasks": ids, "concurrency": 4, "sandbox": "auto"}})
        store.plan_samples(run_id, "humaneval", [(task, "env", 0) for task in ids])
        for sample in store.samples(run_id)[:3]:
            store.save_answer(sample.id, problems()[sample.task_id].canonical_solution,
                              Usage(calls=1, prompt_tokens=120, completion_tokens=40, cost_usd=0.0002))
        store.finish_run(run_id, "interrupted", {})
    finally:
        store.dispose()
    resumed = subprocess.run([sys.executable, "-m", "k2probe", "eval", "--resume", run_id[:8], "--json"],
                             cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert server.state.requests_seen == 1 + 2  # the route check, then only the two samples without an answer
    assert {o for _, o in _samples(workdir)} == {"passed"}
    kept = [s for s in __import__("json").loads(resumed.stdout)["samples"] if s["prompt_tokens"] == 120]
    assert len(kept) == 3 and all(s["cost_usd"] == 0.0002 for s in kept)  # what was paid is still counted
