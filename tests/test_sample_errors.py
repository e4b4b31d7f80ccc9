"""Whose fault, decided once: a sample k2probe fails on is that sample's `error` (with its traceback), and a route that
never answered makes a sample or an agent attempt `error`, unverified, never the model's failure."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from .conftest import EMULATOR_KEY, route_env
from .fakeserver import FakeServer, JsonHandler

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "suite"


def _suite_with_a_broken_task(folder: Path) -> Path:
    """The example suite plus a task whose verification command holds a NUL byte: no process can be started with
    it, so k2probe itself raises on that sample (in its preflight, before any request). Made under /tmp (`scratch`):
    pytest's own folders are closed to the sandbox's uid."""
    suite = folder / "mixed"
    shutil.copytree(EXAMPLE, suite)
    shutil.copytree(suite / "leap-year", suite / "broken")
    (suite / "broken" / "task.toml").write_text(
        'id = "broken"\ntitle = "a verification command no process can run"\n'
        'statement = "Fix is_leap."\nhidden_cmd = "python -m pytest -q\\u0000 hidden_tests"\n')
    return suite


def _run_status(workdir: Path) -> str:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        return str(db.execute("select status from runs where command = 'eval'").fetchone()[0])


def _verification(workdir: Path, task_id: str) -> dict[str, Any]:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        return dict(json.loads(db.execute("select verification from samples where task_id = ?", (task_id,)).fetchone()[0]))


def test_a_sample_that_raises_is_error_with_its_traceback_and_the_others_finish(cli, workdir, scratch):
    suite = str(_suite_with_a_broken_task(scratch("k2probe-suite-")))
    result = cli("eval", suite, "--json", timeout=300)
    assert result.code == 1, result.stderr[-2000:]  # one sample nobody could judge: over --max-error-rate 0
    assert "1 of 2 sample(s) ended as error" in result.stderr and "embedded null byte" in result.stderr
    samples = {s["task_id"]: s for s in result.json()["samples"]}
    assert samples["leap-year"]["outcome"] == "failed", samples["leap-year"]  # judged: the emulator changes nothing
    broken = samples["broken"]
    assert broken["outcome"] == "error" and broken["reason"].startswith("k2probe failed on this sample: ValueError")
    proof = _verification(workdir, "broken")["output"]
    assert "Traceback (most recent call last)" in proof and "embedded null byte" in proof
    assert _run_status(workdir) == "finished"
    allowed = cli("eval", suite, "--max-error-rate", "0.5", "--json", timeout=300)  # the user's own allowance
    assert allowed.code == 0, allowed.stderr[-2000:]


def test_fail_fast_stops_the_run_at_the_sample_that_raises(cli, workdir, scratch):
    result = cli("eval", str(_suite_with_a_broken_task(scratch("k2probe-suite-"))), "--json", "--concurrency", "1",
                 env={"K2PROBE_FAIL_FAST": "1"}, timeout=300)
    assert result.code != 0 and "embedded null byte" in result.stderr
    assert _run_status(workdir) == "interrupted"


class RevokedKey(FakeServer):
    """A route whose key works for its first request (k2probe's route check) and is refused with Moonshot's 401 from
    then on, as when a key is revoked mid-run."""

    def __init__(self) -> None:
        self.posts = 0
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                self.read_json()
                owner.posts += 1
                if owner.posts == 1:
                    self.send_json({"id": "c", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code",
                                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                        "role": "assistant", "content": "ok", "reasoning_content": "ok"}}],
                                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
                    return
                body = json.dumps({"error": {"message": "Invalid Authentication",
                                             "type": "invalid_authentication_error"}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)


def _revoked(server: RevokedKey) -> dict[str, str]:
    return {"AI_GATEWAY_API_KEY": EMULATOR_KEY, "AI_GATEWAY_BASE_URL": server.base_url}


def test_a_wrong_key_stops_eval_and_agent_before_their_work_with_doctors_diagnosis(cli, emulator, workdir):
    """One cheap request proves the key before the first of up to 164 paid samples: exit 2 with the diagnosis and its
    fix, no run recorded as if the model had been judged."""
    server = emulator()
    for command in (("eval", "humaneval", "--limit", "5"), ("agent", "--task", "parse-total")):
        before = server.state.requests_seen
        result = cli(*command, env=route_env(server, key="sk-wrong"), timeout=300)
        assert result.code == 2, result.stderr[-2000:]
        line = result.stderr.strip().splitlines()[-1]
        assert "cannot be used (invalid_key): HTTP 401" in line and "check the key" in line, line
        assert server.state.requests_seen - before <= 2 and "sk-wrong" not in result.stdout + result.stderr
    assert not (workdir / "home" / "k2probe.db").exists() or _no_eval_samples(workdir)


def _no_eval_samples(workdir: Path) -> bool:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        return db.execute("select count(*) from samples").fetchone()[0] == 0


def test_a_401_route_makes_the_agent_error_exit_2_with_no_hidden_tests_run(cli, workdir):
    with RevokedKey() as server:
        result = cli("agent", "--task", "parse-total", "--json", env=_revoked(server))
    assert result.code == 2, result.stderr[-2000:]
    data = result.json()
    verification = data["verification"]
    assert verification["status"] == "error" and verification["reason"].startswith("no answer: invalid_key")
    assert "HTTP 401" in verification["reason"] and "sk-wrong" not in result.stdout
    assert verification["command"] == "" and verification["duration_ms"] == 0  # nothing was run on the repository
    assert data["end_reason"] == "api_error" and data["diff"] == ""


def test_a_401_route_makes_every_eval_sample_error(cli, workdir):
    with RevokedKey() as server:
        result = cli("eval", "basic", "--tasks", "parse-total,slugify", "--json", env=_revoked(server), timeout=300)
    assert result.code == 1, result.stderr  # errors over --max-error-rate 0: nothing was judged, the run says so
    assert "2 of 2 sample(s) ended as error" in result.stderr and "invalid_key" in result.stderr
    samples = result.json()["samples"]
    assert len(samples) == 2
    for sample in samples:
        assert sample["outcome"] == "error" and sample["reason"].startswith("no answer: invalid_key"), sample
        assert "HTTP 401" in sample["reason"] and not _verification(workdir, sample["task_id"]).get("command")
    assert _run_status(workdir) == "finished"
