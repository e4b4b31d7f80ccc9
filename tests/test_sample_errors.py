"""Whose fault, decided once: a sample k2probe fails on is that sample's `error` (with its traceback), and a route that
never answered makes a sample or an agent attempt `error`, unverified, never the model's failure."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from .conftest import route_env

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
    result = cli("eval", str(_suite_with_a_broken_task(scratch("k2probe-suite-"))), "--json", timeout=300)
    assert result.code == 0, result.stderr[-2000:]
    samples = {s["task_id"]: s for s in result.json()["samples"]}
    assert samples["leap-year"]["outcome"] == "failed", samples["leap-year"]  # judged: the emulator changes nothing
    broken = samples["broken"]
    assert broken["outcome"] == "error" and broken["reason"].startswith("k2probe failed on this sample: ValueError")
    proof = _verification(workdir, "broken")["output"]
    assert "Traceback (most recent call last)" in proof and "embedded null byte" in proof
    assert _run_status(workdir) == "finished"


def test_fail_fast_stops_the_run_at_the_sample_that_raises(cli, workdir, scratch):
    result = cli("eval", str(_suite_with_a_broken_task(scratch("k2probe-suite-"))), "--json", "--concurrency", "1",
                 env={"K2PROBE_FAIL_FAST": "1"}, timeout=300)
    assert result.code != 0 and "embedded null byte" in result.stderr
    assert _run_status(workdir) == "interrupted"


def test_a_401_route_makes_the_agent_error_exit_2_with_no_hidden_tests_run(cli, emulator, workdir):
    server = emulator()
    result = cli("agent", "--task", "parse-total", "--json", env=route_env(server, key="sk-wrong"))
    assert result.code == 2, result.stderr[-2000:]
    data = result.json()
    verification = data["verification"]
    assert verification["status"] == "error" and verification["reason"].startswith("no answer: invalid_key")
    assert "HTTP 401" in verification["reason"] and "sk-wrong" not in result.stdout
    assert verification["command"] == "" and verification["duration_ms"] == 0  # nothing was run on the repository
    assert data["end_reason"] == "api_error" and data["diff"] == ""


def test_a_401_route_makes_every_eval_sample_error(cli, emulator, workdir):
    server = emulator()
    result = cli("eval", "basic", "--tasks", "parse-total,slugify", "--json", env=route_env(server, key="sk-wrong"),
                 timeout=300)
    samples = result.json()["samples"]
    assert len(samples) == 2
    for sample in samples:
        assert sample["outcome"] == "error" and sample["reason"].startswith("no answer: invalid_key"), sample
        assert "HTTP 401" in sample["reason"] and not _verification(workdir, sample["task_id"]).get("command")
    assert _run_status(workdir) == "finished"
