"""The tool-calling loop on the shipped tasks, against the emulator playing the model: solved, verified, logged."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from k2probe.agent import AgentLimits, AgentTask, run_agent
from k2probe.agent.loop import read_trajectory
from k2probe.api import command_contexts
from k2probe.emulator import EmulatorSettings
from k2probe.tasks.shipped import load_suite

TASKS = load_suite()


def _task(task) -> AgentTask:
    return AgentTask(task.statement, task.repo, task.test_cmd, task.hidden, task.hidden_cmd, task.id, task.suite)


def _run(task: AgentTask, settings: EmulatorSettings | None = None, limits: AgentLimits | None = None, **kwargs):
    with command_contexts("agent", emulator=settings or EmulatorSettings()) as (routed, run):
        return asyncio.run(run_agent(routed, run, task, limits, **kwargs))


def test_suite_has_at_least_12_realistic_tasks():
    assert len(TASKS) >= 12
    for task in TASKS:
        assert task.statement and task.repo.is_dir() and any(task.hidden.glob("test_*.py"))
        assert not any(p.name.startswith("test_hidden") for p in task.repo.rglob("*"))  # hidden means hidden


@pytest.mark.parametrize("task", TASKS, ids=[t.id for t in TASKS])
def test_every_shipped_task_is_solved_end_to_end(workdir, task):
    result = _run(_task(task))
    data = result.as_json()
    assert data["verification"]["status"] == "passed", data["verification"]
    assert data["verification"]["reason"] == "hidden tests passed"
    assert data["end_reason"] == "finished" and data["tool_call_failures"] == {}
    assert data["reasoning_preserved"] and all(data["reasoning_preserved"])
    assert data["diff"].startswith("diff --git")
    trajectory = read_trajectory(Path(data["trajectory"]))
    assert [s["index"] for s in trajectory["steps"]] == list(range(data["steps"]))
    first = trajectory["steps"][0]
    assert first["assistant"]["reasoning_content"] and first["tools"][0]["name"] == "list_files"
    assert trajectory["attempt_id"] == data["attempt_id"] and trajectory["outcome"]["verification"]["status"] == "passed"
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:  # calls are linked to the attempt and step by keys
        linked = db.execute("select attempt_id, step from calls where purpose like 'agent step %' order by id").fetchall()
    assert [step for _, step in linked] == list(range(data["steps"]))
    assert {attempt for attempt, _ in linked} == {data["attempt_id"]}


def test_hidden_tests_fail_without_the_fix(workdir):
    """The verification is real: the same loop on a task whose patch is never applied fails verification."""
    task = _task(TASKS[0])
    result = _run(AgentTask("Only look around, change nothing.", task.repo, task.test_cmd, task.hidden,
                            task.hidden_cmd), limits=AgentLimits(max_steps=2))
    assert not result.passed and result.verification.reason.startswith("hidden tests failed")
    assert result.loop.end_reason == "steps" and result.diff == ""


def test_slips_are_recovered_and_counted_by_type(workdir):
    failures: dict[str, int] = {}
    for task in TASKS[:6]:
        result = _run(_task(task), EmulatorSettings(slip_rate=0.6, seed=4))
        assert result.passed, (task.id, result.as_json()["tool_call_failures"])
        for kind, count in result.loop.failures.items():
            failures[kind] = failures.get(kind, 0) + count
        tool_failures = [t.failure for s in result.loop.steps for t in s.tools if t.failure]
        assert len(tool_failures) == sum(result.loop.failures.values())
    assert set(failures) <= {"invalid_json", "unknown_tool", "patch_failed", "no_tool_call"}
    assert len(failures) >= 2 and sum(failures.values()) >= 4, failures


def test_three_failures_in_a_row_end_the_run(workdir):
    result = _run(_task(TASKS[1]), EmulatorSettings(slip_rate=1.0), AgentLimits(max_consecutive_failures=1))
    assert result.loop.end_reason == "tool_failures" and not result.passed
    assert sum(result.loop.failures.values()) == 1


def test_step_and_cost_limits(workdir):
    task = _task(TASKS[2])
    assert _run(task, limits=AgentLimits(max_steps=2)).loop.end_reason == "steps"
    stopped = _run(task, limits=AgentLimits(max_cost_usd=0.000001))
    assert stopped.loop.end_reason == "cost" and len(stopped.loop.steps) == 1


def _drop_reasoning(history):
    return [{k: v for k, v in m.items() if k != "reasoning_content"} for m in history]


def test_dropped_reasoning_is_caught_by_the_emulator_and_by_the_loop(workdir):
    result = _run(_task(TASKS[3]), history_transform=_drop_reasoning)
    steps = result.loop.steps
    assert steps[0].reasoning_preserved is True  # nothing to keep yet
    assert steps[1].reasoning_preserved is False  # the loop's own check
    assert result.loop.end_reason == "api_error"  # and Moonshot's 400, from the emulator
    assert "reasoning_content is missing in assistant tool call message at index 2" in result.loop.detail
    assert not result.passed


def test_agent_command_json_and_store(cli, workdir: Path):
    result = cli("agent", "--task", "parse-total", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["verification"]["status"] == "passed" and data["task"] == "parse-total"
    assert data["steps"] == 5 and data["tool_call_failures"] == {} and data["reasoning_preserved"] == [True] * 5
    assert data["prompt_tokens"] > 0 and data["cost_usd"] > 0 and "Decimal" in data["diff"]
    assert data["isolation"]["network"].startswith("cut")
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        attempt = db.execute("select status, end_reason, steps, diff from attempts").fetchone()
        steps = db.execute("select count(*), sum(reasoning_preserved) from steps").fetchone()
    assert attempt[0] == "passed" and attempt[1] == "finished" and attempt[2] == 5 and "Decimal" in attempt[3]
    assert steps == (5, 5)


def test_agent_on_a_user_repo_never_touches_it(cli, workdir: Path):
    source = TASKS[4]
    repo = workdir / "myrepo"
    shutil.copytree(source.repo, repo)
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    result = cli("agent", source.statement, "--repo", str(repo), "--json")
    assert result.code == 0, result.stderr  # verified by the repo's own tests (no hidden tests here)
    assert result.json()["verification"]["reason"] == "tests passed"
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_agent_exit_codes(cli, workdir: Path):
    repo = workdir / "r"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_x.py").write_text("def test_fails():\n    assert False\n")
    failed = cli("agent", "make the test pass", "--repo", str(repo), "--max-steps", "2")
    assert failed.code == 1 and "verification: failed" in failed.stdout
    assert cli("agent", "x", "--repo", str(workdir / "missing")).code == 2
    assert cli("agent").code == 2
    (workdir / "empty").mkdir()
    no_tests = cli("agent", "x", "--repo", str(workdir / "empty"))
    assert no_tests.code == 2 and "--test-cmd" in no_tests.stderr


def test_a_hanging_test_command_is_a_recorded_failure(cli, workdir: Path):
    repo = workdir / "r"
    repo.mkdir()
    result = cli("agent", "anything", "--repo", str(repo), "--test-cmd", "python -c 'while True: pass'",
                 "--max-steps", "1", "--test-timeout", "2", "--json")
    assert result.code == 1
    assert result.json()["verification"]["reason"] in ("tests timed out after 2 s",
                                                       "tests failed: exit 152 (CPU-time limit)")


def test_wall_time_limit(workdir):
    result = _run(_task(TASKS[5]), EmulatorSettings(ttft_ms=400), AgentLimits(timeout_s=0.2))
    assert result.loop.end_reason == "timeout" and not result.passed


def test_an_empty_turn_is_a_counted_failure(workdir):
    for seed in range(40):  # find a seed whose first slip is an empty turn; the script is deterministic per seed
        result = _run(_task(TASKS[6]), EmulatorSettings(slip_rate=0.5, seed=seed))
        if result.loop.failures.get("no_tool_call"):
            break
    assert result.loop.failures["no_tool_call"] >= 1 and result.passed
    empty = next(s for s in result.loop.steps if any(t.failure == "no_tool_call" for t in s.tools))
    assert empty.assistant["content"] == "" and not empty.assistant.get("tool_calls")
    assert "neither a tool call nor an answer" in empty.tools[0].result


def test_agent_task_with_a_screenshot(cli, workdir: Path):
    from .media_files import image

    shot = image(workdir / "bug.png", "PNG", (640, 360))
    result = cli("agent", "--task", "slugify", "--image", str(shot), "--json")
    assert result.code == 0, result.stderr
    trajectory = read_trajectory(Path(result.json()["trajectory"]))
    assert "I received image 1: PNG 640x360" in trajectory["steps"][0]["assistant"]["reasoning_content"]
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        media = db.execute("select media from calls where endpoint = '/chat/completions' limit 1").fetchone()[0]
    assert json.loads(media)[0]["width"] == 640


def test_context_limit(workdir):
    result = _run(_task(TASKS[7]), limits=AgentLimits(context_fraction=0.001))  # 0.1% of 262144 tokens: ~262
    assert result.loop.end_reason == "context" and len(result.loop.steps) == 1
    assert "of a 262144-token window" in result.loop.detail
