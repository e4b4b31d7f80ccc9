"""Verdicts blame the right party: `failed` is the model's work, `error` the harness or the machine, proven by its lines;
a preflight proves a shipped task's harness before any model is judged by it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from k2probe.sandbox.isolation import Limits, SandboxResult, isolation
from k2probe.sandbox.outcome import judge
from k2probe.sandbox.preflight import preflight
from k2probe.sandbox.runtime import Runtime
from k2probe.tasks.shipped import Task, find_task


def _bare_venv(folder: Path) -> Path:
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def _repo(folder: Path) -> Path:
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_x.py").write_text("def test_x():\n    assert True\n")
    return folder


def test_an_interpreter_without_pytest_is_an_error_not_a_failure(cli, workdir, scratch):
    python = _bare_venv(scratch("k2probe-nopytest-"))
    result = cli("agent", "make the tests pass", "--repo", str(_repo(workdir / "r")), "--python", str(python),
                 "--max-steps", "2", "--json")
    data = result.json()
    assert result.code == 2, result.stderr
    assert data["verification"]["status"] == "error"
    assert data["verification"]["reason"].startswith(f"pytest is not installed for {python}")
    assert "No module named pytest" in data["verification"]["output"]
    shown = cli("agent", "make the tests pass", "--repo", str(_repo(workdir / "r2")), "--python", str(python),
                "--max-steps", "1")
    assert shown.code == 2 and "verification: error (pytest is not installed" in shown.stdout
    assert "| " in shown.stdout and "No module named pytest" in shown.stdout  # the lines that prove it
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        assert {row[0] for row in db.execute("select status from attempts")} == {"error"}


def test_a_shipped_task_whose_harness_fails_here_sends_nothing(cli, workdir, scratch):
    result = cli("agent", "--task", "parse-total", "--python", str(_bare_venv(scratch("k2probe-nopytest-"))), "--json")
    data = result.json()
    assert result.code == 2 and data["verification"]["status"] == "error"
    assert data["verification"]["reason"].startswith("preflight failed: the harness cannot run here: pytest is not")
    assert data["end_reason"] == "preflight" and data["steps"] == 0 and data["prompt_tokens"] == 0


def test_a_missing_test_command_is_an_error(cli, workdir):
    result = cli("agent", "x", "--repo", str(_repo(workdir / "r")), "--test-cmd", "no-such-runner -q",
                 "--max-steps", "1", "--json")
    assert result.code == 2 and result.json()["verification"]["status"] == "error"
    assert "not found (exit 127)" in result.json()["verification"]["reason"]


def test_code_cannot_fake_a_harness_error(scratch):
    """Printed text never decides `error`: the harness's signs printed by the code under test leave it `failed`; only
    k2probe's own probe (an empty sandbox, none of the model's code) can say the harness cannot run."""
    runtime, iso = Runtime.own(), isolation()
    for code, stdout in ((1, "F\n1 failed in 0.1s\n"), (1, ""), (127, ""), (126, ""), (125, "")):
        faked = SandboxResult("python -m pytest", code, stdout,
                              f"{runtime.python}: No module named pytest\nk2probe sandbox: could not lay\n"
                              "sh: Cannot fork\nsh: 1: pytest: not found\n", 10.0)
        verdict = judge(faked, "tests", runtime, Limits(), iso)
        assert verdict.status == "failed" and verdict.guard.startswith("unguarded: exit status only"), (code, verdict)
    bare = Runtime.caller(str(_bare_venv(scratch("k2probe-nopytest-"))))
    real = SandboxResult("python -m pytest", 1, "", "", 10.0)
    verdict = judge(real, "tests", bare, Limits(), iso)
    assert verdict.status == "error" and verdict.reason.startswith("pytest is not installed for"), verdict
    assert "No module named pytest" in verdict.output
    missing = judge(SandboxResult("no-such-runner -q", 127, "", "", 10.0), "tests", runtime, Limits(), iso)
    assert missing.status == "error" and "not found (exit 127)" in missing.reason


def test_preflight_catches_a_broken_task(tmp_path):
    shipped = find_task("median")
    root = tmp_path / "median"
    shutil.copytree(shipped.root, root)
    broken = Task(shipped.id, "mine", shipped.title, shipped.statement, shipped.test_cmd, shipped.hidden_cmd, root)
    iso = isolation()
    assert preflight(broken, iso).ok
    shutil.rmtree(root / "solution")
    shutil.copytree(root / "repo", root / "solution")  # a "solution" that fixes nothing
    result = preflight(broken, iso)
    assert not result.ok and result.detail.startswith("the reference solution does not pass")
    assert result.untouched.status == "failed" and result.solved.status == "failed"


def test_suite_check(cli):
    result = cli("suite", "check", "basic", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["ok"] and len(data["tasks"]) == 12
    assert all(t["untouched"]["status"] == "failed" and t["solved"]["status"] == "passed" for t in data["tasks"])
    assert cli("suite", "check", "nope").code == 2


def _owned_by(folder: Path, pid: int) -> bool:
    try:
        return f":{pid}:" in (folder / ".k2probe-owner").read_text()
    except OSError:
        return False


def test_kill_9_leaves_an_interrupted_run_and_no_folders(cli, workdir):
    """A killed agent is `interrupted` at the next start (pid and start time, so a reused pid is no alibi), and its
    workspace folders are removed then."""
    import json
    import os
    import signal
    import time

    from .hostile import HostileModel

    model = HostileModel([("run_tests", {})]).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT"))}
    env.update({"AI_GATEWAY_BASE_URL": model.base_url, "AI_GATEWAY_API_KEY": "sk-kill-nine-0000000000",
                "K2PROBE_HOME": str(workdir / "home")})
    try:
        process = subprocess.Popen([sys.executable, "-m", "k2probe", "agent", "x", "--repo", str(_repo(workdir / "r")),
                                    "--test-cmd", "sleep 60"], cwd=workdir, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        mine: list[Path] = []
        while time.monotonic() < deadline and not (mine and model.requests):
            time.sleep(0.2)
            mine = [p for p in Path(tempfile.gettempdir()).glob("k2probe-ws-*") if _owned_by(p, process.pid)]
        assert mine and model.requests, "the agent never started its run"
        time.sleep(1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        model.stop()
    assert all(p.exists() for p in mine)  # left behind by the kill...
    runs = cli("runs", "--json").json()["runs"]
    assert [r["status"] for r in runs] == ["interrupted"]
    assert not any(p.exists() for p in mine)  # ...and gone at the next start
    detail = cli("show", runs[0]["id"], "--json").json()
    assert [a["status"] for a in detail["attempts"]] == ["interrupted"]
    assert json.dumps(detail).count("sk-kill-nine") == 0


def test_a_failed_open_leaves_nothing_running(workdir, monkeypatch):
    """Three opens that fail after the emulator started (the store cannot open) leave no emulator thread behind."""
    import threading

    import pytest

    from k2probe.api import command_contexts
    from k2probe.core.errors import ConfigError

    before = threading.active_count()
    monkeypatch.setenv("K2PROBE_DB_URL", "nosuchdialect://x")
    for _ in range(3):
        with pytest.raises(ConfigError), command_contexts("chat"):
            pass
    assert threading.active_count() == before


def test_every_kind_of_temporary_folder_a_killed_process_left_is_removed():
    """Workspaces, sandbox runs and outputs, preflights, verification batches: each marks its owner; the next start
    removes those whose owner died, and leaves a live process's alone."""
    from k2probe.core.liveness import LEFTOVER_PATTERNS, OWNER_FILE, remove_leftovers, token

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, live = token(gone.pid), token()
    folders = {}
    for pattern in LEFTOVER_PATTERNS:
        prefix = pattern.rstrip("*")
        for owner in (dead, live):
            folder = Path(tempfile.mkdtemp(prefix=prefix))
            (folder / OWNER_FILE).write_text(owner)
            folders[folder] = owner
    try:
        assert remove_leftovers() >= len(LEFTOVER_PATTERNS)
        for folder, owner in folders.items():
            assert folder.exists() == (owner == live), folder
        assert {"k2probe-out-*", "k2probe-programs-*"} <= set(LEFTOVER_PATTERNS)
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
