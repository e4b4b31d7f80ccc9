"""A hostile model (an OpenAI-compatible server of our own, through the real SDK) attacks the host through the agent's
tools, its test runs and the verification. Each attack must fail, and the attempt must still end with an outcome."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from k2probe.agent import AgentLimits, AgentTask, run_agent
from k2probe.agent.workspace import Workspace
from k2probe.api import command_contexts

from .conftest import venv_seeing_our_packages
from .hostile import HostileModel

KEY = "sk-hostile-canary-5d1e0c7b9a2f"
PYTEST = "python -m pytest -q -p no:cacheprovider"


@pytest.fixture
def hostile(workdir, monkeypatch):
    started: list[HostileModel] = []

    def start(script: list[tuple[str, dict[str, Any]]]) -> HostileModel:
        model = HostileModel(script).start()
        started.append(model)
        monkeypatch.setenv("AI_GATEWAY_BASE_URL", model.base_url)
        monkeypatch.setenv("AI_GATEWAY_API_KEY", KEY)
        return model

    yield start
    for model in started:
        model.stop()


def _repo(folder: Path) -> Path:
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "mod.py").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    (folder / "tests").mkdir()
    (folder / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    return folder


def _agent(repo: Path, test_cmd: str = PYTEST, hidden: Path | None = None, **limits: Any):
    with command_contexts("agent") as (routed, run):
        return asyncio.run(run_agent(routed, run, AgentTask("do the task", repo, test_cmd, hidden, None),
                                     AgentLimits(**limits)))


def _attempt_status(workdir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        return db.execute("select status, end_reason from attempts").fetchall()


def _evil_config(marker: Path) -> str:
    return (f"[core]\n\tfsmonitor = touch {marker}-fsmonitor\n\thooksPath = {marker.parent}\n"
            f"[filter \"pwn\"]\n\tclean = touch {marker}-filter\n\tsmudge = touch {marker}-filter\n\trequired = true\n"
            f"[diff \"pwn\"]\n\ttextconv = touch {marker}-textconv;cat\n")


def test_git_config_planted_by_a_test_run_never_runs_on_the_host(hostile, workdir, tmp_path):
    """Attack 1: conftest.py (run by run_tests) plants fsmonitor, a clean filter and hooks wherever .git could be."""
    marker = tmp_path / "pwned"
    conftest = (
        "import pathlib\n"
        f"CFG = {_evil_config(marker)!r}\n"
        "here = pathlib.Path.cwd()\n"
        "for target in (here / '.git', here.parent / 'git', here.parent / '.git'):\n"
        "    try:\n"
        "        (target / 'hooks').mkdir(parents=True, exist_ok=True)\n"
        "        (target / 'config').write_text(CFG)\n"
        f"        (target / 'hooks' / 'pre-commit').write_text('#!/bin/sh\\ntouch {marker}-hook\\n')\n"
        "    except OSError as exc:\n"
        "        print('blocked', target, exc)\n"
        "(here / '.gitattributes').write_text('* filter=pwn diff=pwn\\n')\n")
    model = hostile([("write_file", {"path": "conftest.py", "content": conftest}),
                     ("write_file", {"path": ".gitattributes", "content": "* filter=pwn diff=pwn\n"}),
                     ("run_tests", {})])
    result = _agent(_repo(tmp_path / "repo"))
    assert result.verification.passed and result.loop.end_reason == "finished"
    assert "+* filter=pwn diff=pwn" in result.diff  # the diff was taken, with the attributes in the tree
    assert list(tmp_path.glob("pwned*")) == []
    assert "1 passed" in model.tool_results()[2]


def test_a_git_dir_written_behind_k2probe_is_restored_before_git_runs(tmp_path):
    """The same, had code run unsandboxed (--sandbox none) and written k2probe's own git dir: not trusted."""
    marker = tmp_path / "pwned"
    ws = Workspace(_repo(tmp_path / "repo"))
    try:
        (ws.git_dir / "config").write_text(_evil_config(marker))
        (ws.git_dir / "info" / "attributes").write_text("* filter=pwn diff=pwn\n")
        (ws.root / ".gitattributes").write_text("* filter=pwn diff=pwn\n")
        (ws.root / "pkg" / "mod.py").write_text("changed\n")
        diff = ws.diff()
        assert "+changed" in diff
        assert list(tmp_path.glob("pwned*")) == []
    finally:
        ws.cleanup()


def test_a_patch_may_not_rename_onto_git_config(hostile, workdir, tmp_path):
    """Attack 2: rename from evil.cfg / rename to .git/config, which the fuzzy `patch` fallback would apply."""
    patch = "diff --git a/evil.cfg b/.git/config\nsimilarity index 100%\nrename from evil.cfg\nrename to .git/config\n"
    fuzzy = ("--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -1,3 +1,3 @@\n line 1\n-line 2\n+two\n line 3 CHANGED\n" + patch)
    model = hostile([("write_file", {"path": "evil.cfg", "content": _evil_config(tmp_path / "pwned")}),
                     ("apply_patch", {"patch": fuzzy}),
                     ("apply_patch", {"patch": patch.replace("rename to .git/config", "rename to sub/../.git/config")
                                      .replace("b/.git/config", "b/x")})])
    result = _agent(_repo(tmp_path / "repo"))
    results = model.tool_results()
    assert results[1].startswith("ERROR (path_denied)") and ".git" in results[1]
    assert results[2].startswith("ERROR (path_denied)")
    assert result.loop.failures["path_denied"] == 2 and list(tmp_path.glob("pwned*")) == []


def test_a_symlink_patch_with_a_failing_hunk_writes_no_host_file(hostile, workdir, tmp_path):
    """Attack 3: a patch that turns a file into a link to a host file, plus a hunk that fails (the old 'restore'
    wrote through the link); and the same on a link the user's repository already had."""
    host_file = tmp_path / "host.txt"
    host_file.write_text("host content\n")
    to_link = ("diff --git a/pkg/mod.py b/pkg/mod.py\nold mode 100644\nnew mode 120000\n--- a/pkg/mod.py\n"
               "+++ b/pkg/mod.py\n@@ -1,10 +1 @@\n" + "".join(f"-line {i}\n" for i in range(1, 11))
               + f"+{host_file}\n\\ No newline at end of file\n"
               "--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -1,2 +1,2 @@\n-not there\n-nor this\n+x\n+y\n")
    through = "--- a/link.txt\n+++ b/link.txt\n@@ -1 +1 @@\n-not the content\n+pwned\n"
    repo = _repo(tmp_path / "repo")
    os.symlink(host_file, repo / "link.txt")
    model = hostile([("apply_patch", {"patch": to_link}), ("apply_patch", {"patch": through}),
                     ("write_file", {"path": "link.txt", "content": "pwned\n"}),
                     ("read_file", {"path": "link.txt"})])
    result = _agent(repo, max_consecutive_failures=10)
    results = model.tool_results()
    assert all(r.startswith("ERROR (path_denied)") for r in results[:4]), results
    assert host_file.read_text() == "host content\n"
    assert "host content" not in "".join(results) and result.loop.end_reason == "finished"


def test_verification_never_writes_through_a_hidden_tests_link(hostile, workdir, tmp_path):
    """Attack 4: `hidden_tests` in the workspace is a link to a host folder; the hidden tests are laid in its place."""
    host_dir = tmp_path / "host_dir"
    host_dir.mkdir()
    hidden = tmp_path / "hidden" / "hidden_tests"
    hidden.mkdir(parents=True)
    (hidden / "test_hidden.py").write_text("def test_hidden():\n    assert True\n")
    repo = _repo(tmp_path / "repo")
    os.symlink(host_dir, repo / "hidden_tests")
    hostile([])
    result = _agent(repo, test_cmd=PYTEST, hidden=hidden)
    assert result.verification.passed and "2 passed" in result.verification.output
    assert list(host_dir.iterdir()) == []


def test_host_side_tools_never_follow_links_out(hostile, workdir, tmp_path):
    """Attack 5: links to a root-only file and to /proc/self/environ (k2probe's own, key included), and a FIFO."""
    secret = tmp_path / "secret"
    secret.write_text("root-only-canary\n")
    secret.chmod(0o600)
    repo = _repo(tmp_path / "repo")
    os.symlink(secret, repo / "s1.txt")
    os.symlink("/proc/self/environ", repo / "e.txt")
    os.symlink(tmp_path, repo / "outside_dir")
    os.mkfifo(repo / "pipe")
    model = hostile([("search", {"pattern": "canary|sk-|AI_GATEWAY"}), ("read_file", {"path": "s1.txt"}),
                     ("read_file", {"path": "e.txt"}), ("read_file", {"path": "pipe"}),
                     ("search", {"pattern": "canary", "path": "outside_dir"}), ("list_files", {}),
                     ("read_file", {"path": "outside_dir/secret"})])
    started = time.monotonic()
    result = _agent(repo, max_consecutive_failures=10)
    results = model.tool_results()
    text = "\n".join(results)
    assert "root-only-canary" not in text and KEY not in text and "AI_GATEWAY" not in text.replace("canary|", "")
    assert results[0] == "no matches" and results[1].startswith("ERROR (path_denied)")
    assert results[2].startswith("ERROR (path_denied)") and results[3].startswith("ERROR")  # the copy left the FIFO out
    assert results[4].startswith("ERROR (path_denied)") and results[6].startswith("ERROR (path_denied)")
    assert "pkg/mod.py" in results[5] and "symbolic links not listed" in results[5] and "s1.txt" not in results[5]
    assert result.loop.end_reason == "finished" and time.monotonic() - started < 60  # the FIFO did not block


@pytest.mark.parametrize("call", [("read_file", {"path": "pkg/\x00mod.py"}),
                                  ("write_file", {"path": "a\x00b", "content": "x"}),
                                  ("list_files", {"path": "\x00"}),
                                  ("search", {"pattern": "x", "path": "pkg\n/../.."}),
                                  ("apply_patch", {"patch": "--- a/x\x00y\n+++ b/x\x00y\n@@ -1 +1 @@\n-a\n+b\n"})])
def test_invalid_paths_are_tool_errors_and_the_attempt_ends(hostile, workdir, tmp_path, call):
    """Attack 6: a NUL byte in a tool path raised out of the toolbox and left the attempt `running`."""
    model = hostile([call])
    result = _agent(_repo(tmp_path / "repo"))
    assert model.tool_results()[0].startswith("ERROR (path_denied)")
    assert result.loop.end_reason == "finished"
    assert _attempt_status(workdir) == [("passed", "finished")]


def test_an_exception_inside_the_run_still_ends_the_attempt(hostile, workdir, tmp_path):
    hostile([("list_files", {})])

    def explode(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(history) > 2:
            raise RuntimeError("boom")
        return history

    with command_contexts("agent") as (routed, run), pytest.raises(RuntimeError):
        asyncio.run(run_agent(routed, run, AgentTask("t", _repo(tmp_path / "repo"), PYTEST), history_transform=explode))
    assert _attempt_status(workdir) == [("error", "crashed")]
    assert not list(Path(tempfile.gettempdir()).glob(f"k2probe-ws-*/repo/{tmp_path.name}"))


def test_timeout_bounds_the_whole_run_verification_included(cli, workdir, tmp_path):
    """Attack 8: a test that never ends ran to --test-timeout in the loop and again in verification."""
    model = HostileModel([("run_tests", {}), ("run_tests", {})]).start()
    try:
        repo = _repo(tmp_path / "repo")
        started = time.monotonic()
        result = cli("agent", "anything", "--repo", str(repo), "--test-cmd",
                     "python -c 'import time\nwhile True: time.sleep(1)'", "--timeout", "12", "--json",
                     env={"AI_GATEWAY_BASE_URL": model.base_url, "AI_GATEWAY_API_KEY": KEY})
        elapsed = time.monotonic() - started
    finally:
        model.stop()
    data = result.json()
    assert result.code == 1 and data["end_reason"] == "timeout", data
    assert data["verification"]["reason"].startswith("tests timed out")
    assert elapsed <= 12 + 5 + 15, elapsed  # --timeout, the verification's grace, and start-up on a busy machine


def _no_bwrap_path(folder: Path) -> str:
    folder.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in Path(directory).iterdir():
            if entry.name != "bwrap" and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return str(folder)


def test_without_bubblewrap_agent_refuses_and_quickstart_skips(cli, workdir, tmp_path):
    """Fail closed: no isolation, no model-written code; `--sandbox none` runs it and says so wherever it is shown."""
    env = {"PATH": _no_bwrap_path(tmp_path / "bin")}
    refused = cli("agent", "--task", "parse-total", env=env)
    assert refused.code == 2 and "apt-get install bubblewrap" in refused.stderr and "--sandbox none" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (workdir / "home" / "k2probe.db").exists()
    quick = cli("quickstart", env=env)
    assert quick.code == 0, quick.stdout + quick.stderr
    skipped = next(line for line in quick.stdout.splitlines() if " agent " in f" {line} ")
    assert skipped.startswith("! agent") and "apt-get install bubblewrap" in skipped
    accepted = cli("agent", "--task", "parse-total", "--sandbox", "none", "--json", env=env)
    assert accepted.code == 0, accepted.stderr
    assert accepted.json()["isolation"]["sandbox"] == "none"
    runs = cli("runs", "--json").json()["runs"]
    shown = cli("show", runs[0]["id"])
    assert "sandbox none (NOT isolated)" in shown.stdout


def test_agent_in_a_fresh_venv_under_tmp(tmp_path, scratch):
    """The interpreter in a venv under /tmp is seen inside the sandbox: the shipped task passes there."""
    python = venv_seeing_our_packages(scratch("k2probe-venv-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env.update({"K2PROBE_HOME": str(tmp_path / "home"), "PATH": f"{python.parent}:{env['PATH']}"})
    done = subprocess.run([str(python), "-m", "k2probe", "agent", "--task", "parse-total", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert data["verification"]["status"] == "passed" and data["isolation"]["sandbox"] == "bubblewrap"


@pytest.mark.parametrize("planted", [
    ("conftest.py", "import pytest\n@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_call(item):\n"
                    "    item.runtest = lambda: None\n"),
    ("pytest.ini", "[pytest]\naddopts = --co\n"),
    ("text/__init__.py", "import os\nos._exit(0)\n"),
    ("evil.dist-info/entry_points.txt", "[pytest11]\nevil = text.slug\n"),
], ids=["conftest-hook", "ini-addopts", "exit-0-at-import", "plugin-autoload"])
def test_model_written_files_cannot_make_hidden_tests_pass(planted):
    """The unsolved task stays failed whatever the model plants next to it to fool pytest."""
    from k2probe.agent.runner import AgentTask, verify
    from k2probe.agent.workspace import Workspace
    from k2probe.sandbox.executor import executor
    from k2probe.sandbox.isolation import Limits
    from k2probe.tasks.shipped import find_task

    task = AgentTask.from_suite(find_task("slugify"))
    workspace = Workspace(task.repo)
    try:
        name, text = planted
        (workspace.root / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace.root / name).write_text(text)
        verification = asyncio.run(verify(workspace, task, Limits(), executor("bwrap")))
    finally:
        workspace.cleanup()
    assert verification.status == "failed", verification
