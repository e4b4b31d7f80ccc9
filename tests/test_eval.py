"""`k2probe eval`: samples over routes, verified in the sandbox, resumable after kill -9, metrics from the store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from k2probe.emulator.server import EmulatorServer
from k2probe.tasks.humaneval import problems

from .conftest import SCRUB, route_env
from .evalstate import eval_state

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="the sandbox needs bubblewrap")


def _db(workdir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(workdir / "home" / "k2probe.db")
    conn.row_factory = sqlite3.Row
    return conn


def _routes(workdir: Path, **routes: tuple[EmulatorServer, list[str]]) -> dict[str, str]:
    """A k2probe.toml naming each route (an emulator and its fallbacks) with a key variable of its own; the env."""
    toml = ""
    for name, (server, fallback) in routes.items():
        toml += f"[routes.{name}]\nbase_url = '{server.base_url}'\napi_key_env = '{name.upper()}_KEY'\n"
        toml += f"fallback = {fallback!r}\n" if fallback else ""
    (workdir / "k2probe.toml").write_text(toml)
    return {f"{name.upper()}_KEY": "sk-k2probe-emulator" for name in routes}


def test_humaneval_on_the_emulator_sees_both_outcomes_and_prints_every_metric(cli, emulator, workdir):
    server = emulator(wrong_rate=0.4, seed=3)
    result = cli("eval", "humaneval", "--limit", "12", "--epochs", "2", "--json", env=route_env(server))
    assert result.code == 0, result.stderr
    data = result.json()
    samples = data["samples"]
    assert len(samples) == 24 and {s["epoch"] for s in samples} == {0, 1}
    outcomes = {s["outcome"] for s in samples}
    assert outcomes == {"passed", "failed"}, outcomes  # the emulator is wrong at 40%: both verdicts occur
    failed = next(s for s in samples if s["outcome"] == "failed")
    assert failed["reason"] and "AssertionError" in failed["proof"]  # the lines that prove it, not an exit code
    metrics = data["metrics"][data["routes"][0]]
    for name in ("first_success", "accepted_rate", "retries", "tool_call_failure_rate", "repair_minutes",
                 "latency_avg_ms", "latency_p95_ms", "total_tokens", "cost_per_accepted_usd",
                 "rollback_handoff_rate", "pass_at_k", "error_rate"):
        assert name in metrics, name
    passed = sum(s["outcome"] == "passed" for s in samples)
    assert metrics["accepted_rate"]["n"] == 24 and metrics["accepted_rate"]["value"] == pytest.approx(passed / 24)
    low, high = metrics["accepted_rate"]["ci95"]
    assert low < passed / 24 < high
    assert metrics["pass_at_k"]["2"]["value"] >= metrics["pass_at_k"]["1"]["value"]
    assert metrics["first_success"]["calls"] == 1 and metrics["total_tokens"]["prompt_tokens"] > 0
    assert metrics["cost_per_accepted_usd"]["value"] > 0 and metrics["cost_per_accepted_usd"]["price_sources"]
    assert metrics["latency_p95_ms"]["n_calls"] == 24
    with _db(workdir) as db:  # each call is linked to its sample by key
        linked = db.execute("select count(*) from calls where sample_id is not null").fetchone()[0]
        assert linked == 24 and db.execute("select count(distinct sample_id) from calls").fetchone()[0] == 24


def test_thresholds_and_junit(cli, emulator, workdir):
    server = emulator(wrong_rate=0.5, seed=1)
    junit = workdir / "out" / "eval.xml"
    junit.parent.mkdir()
    result = cli("eval", "humaneval", "--limit", "10", "--junit", str(junit), "--fail-under", "accepted_rate=0.99",
                 env=route_env(server))
    assert result.code == 1, result.stderr
    assert "threshold not met: accepted_rate" in result.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "10"
    failures = suite.findall("testcase/failure")
    assert len(failures) == int(suite.get("failures") or 0) >= 1 and not suite.findall("testcase/error")
    held = cli("eval", "humaneval", "--limit", "3", "--fail-under", "error_rate=0", "--json", env=route_env(server))
    assert held.code == 0, held.stderr
    assert held.json()["broken_thresholds"] == []
    bad = cli("eval", "humaneval", "--fail-under", "speed=3")
    assert bad.code == 2 and "unknown metric 'speed'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_samples_file_is_verified_without_calling_a_model(cli, workdir):
    chosen = list(problems().values())[:8]
    lines = []
    for index, problem in enumerate(chosen):
        completion = problem.canonical_solution if index % 2 else "    return None\n"
        lines.append(json.dumps({"task_id": problem.task_id, "completion": completion}))
    (workdir / "samples.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("eval", "humaneval", "--samples", "samples.jsonl", "--json")
    assert result.code == 0, result.stderr
    verdicts = {s["task_id"]: s["outcome"] for s in result.json()["samples"]}
    assert verdicts == {p.task_id: "passed" if i % 2 else "failed" for i, p in enumerate(chosen)}
    with _db(workdir) as db:
        assert db.execute("select count(*) from calls").fetchone()[0] == 0  # no model was asked
    broken = (workdir / "broken.jsonl")
    broken.write_text('{"task_id": "HumanEval/0"}\n')
    refused = cli("eval", "humaneval", "--samples", str(broken))
    assert refused.code == 2 and "needs string fields task_id and completion" in refused.stderr


def test_with_a_fifth_of_requests_failing_every_sample_is_present_and_retries_are_counted(cli, emulator, workdir):
    server = emulator(faults={"rate_limit": 0.05, "server_error": 0.05, "unavailable": 0.05, "cut": 0.05},
                      retry_after_s=0.01, seed=7)
    result = cli("eval", "humaneval", "--limit", "40", "--concurrency", "8", "--json", env=route_env(server),
                 timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    samples = data["samples"]
    assert len(samples) == 40 and all(s["outcome"] in ("passed", "failed", "error") for s in samples)
    metrics = data["metrics"][data["routes"][0]]
    assert metrics["retries"]["total"] >= 1 and metrics["retries"]["n"] > 40
    for sample in samples:  # a sample without an answer is the route's failure, never the model's
        if sample["outcome"] == "error":
            assert sample["reason"].startswith("no answer:")
        else:
            assert sample["outcome"] == "passed"  # wrong_rate is 0: every answered sample is right


def test_eval_of_a_shipped_repo_suite_links_samples_to_agent_attempts(cli, workdir):
    result = cli("eval", "basic", "--tasks", "slugify,roman", "--json", timeout=300)
    assert result.code == 0, result.stderr
    samples = result.json()["samples"]
    assert sorted(s["task_id"] for s in samples) == ["roman", "slugify"]
    tools = result.json()["metrics"][result.json()["routes"][0]]["tool_call_failure_rate"]
    assert tools["n"] >= 4 and tools["value"] == 0.0  # every tool call the loop made, none failed on the emulator
    assert all(s["outcome"] == "passed" for s in samples)
    with _db(workdir) as db:
        rows = db.execute("select a.task_id, s.task_id from attempts a join samples s on s.id = a.sample_id").fetchall()
        assert sorted(r[0] for r in rows) == ["roman", "slugify"] and all(r[0] == r[1] for r in rows)
        steps = db.execute("select count(*) from calls where attempt_id is not null and step is not null").fetchone()[0]
        assert steps >= 2


@pytest.mark.parametrize("kill_after", [0, 8, 20], ids=["at-start", "early", "late"])
def test_resume_after_kill_9_runs_every_sample_exactly_once(cli, emulator, workdir, kill_after):
    server = emulator(ttft_ms=80, seed=2)
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update(route_env(server))
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "eval", "humaneval", "--limit", "24",
                                "--concurrency", "2", "--json"], cwd=workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    run_id, before = None, {}
    while time.monotonic() < deadline and process.poll() is None:
        run_id, before = eval_state(workdir)
        done = sum(1 for outcome, _ in before.values() if outcome != "pending")
        if run_id and len(before) == 24 and done >= kill_after:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_id, before = eval_state(workdir)
    assert run_id is not None
    finished_before = {sid: calls for sid, (outcome, calls) in before.items() if outcome != "pending"}
    assert len(finished_before) < 24

    result = cli("eval", "--resume", run_id[:8], "--json", env=route_env(server), timeout=300)
    assert result.code == 0, result.stderr
    assert result.json()["run_id"] == run_id and len(result.json()["samples"]) == 24
    _, after = eval_state(workdir)
    assert len(after) == 24 and all(outcome in ("passed", "failed") for outcome, _ in after.values())
    for sample_id, calls in finished_before.items():  # no sample that had a result was sent to the model again
        assert after[sample_id][1] == calls
    with _db(workdir) as db:
        assert db.execute("select status from runs where id = ?", (run_id,)).fetchone()[0] == "finished"


def test_bad_eval_usage_is_one_line(cli, workdir):
    for args, words in ((["eval"], "give a SUITE"), (["eval", "nosuch"], "unknown suite 'nosuch'"),
                        (["eval", "humaneval", "--samples", "missing.jsonl"], "not a readable file"),
                        (["eval", "humaneval", "--tasks", "HumanEval/999"], "unknown task(s)"),
                        (["eval", "--resume", "ffffffff"], "no run with id starting")):
        result = cli(*args)
        assert result.code == 2, (args, result.stderr)
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_fallback_from_a_route_answering_503_completes_every_sample(cli, emulator, workdir):
    broken, healthy = emulator(faults={"unavailable": 1.0}), emulator()
    env = _routes(workdir, primary=(broken, ["backup"]), backup=(healthy, []))
    result = cli("eval", "humaneval", "--limit", "6", "--route", "primary", "--json", env=env, timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    assert [s["outcome"] for s in data["samples"]] == ["passed"] * 6
    assert data["metrics"]["primary"]["fallbacks"]["requests"] == 6
    with _db(workdir) as db:
        answered = db.execute("select route, fallback_from, count(*) from calls where status = 200 "
                              "group by route, fallback_from").fetchall()
        assert [tuple(r) for r in answered] == [("backup", "primary", 6)]  # every call says which route answered
        assert db.execute("select count(*) from calls where route = 'primary' and status = 503").fetchone()[0] >= 6


def test_toolcalls_scores_trigger_f1_and_schema_accuracy_per_route(cli, emulator, workdir):
    clean, broken = emulator(), emulator(tool_fault_rate=0.1, seed=4)
    env = _routes(workdir, clean=(clean, []), broken=(broken, []))
    result = cli("eval", "toolcalls", "--route", "clean", "--route", "broken", "--json",
                 env=env, timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    assert len(data["samples"]) == 2 * 108
    good = data["metrics"]["clean"]["suite_metrics"]["toolcalls"]
    bad = data["metrics"]["broken"]["suite_metrics"]["toolcalls"]
    assert good["f1"] == 1.0 and good["schema_accuracy"]["value"] == 1.0 and good["schema_accuracy"]["n"] == 60
    broken_samples = [s for s in data["samples"] if s["route"] == "broken" and s["outcome"] == "failed"]
    assert 2 <= len(broken_samples) <= 14  # about a tenth of the 60 calls, each broken one way
    as_text = [s for s in broken_samples if "got text" in s["reason"]]
    invalid = [s for s in broken_samples if "do not parse" in s["reason"] or "do not validate" in s["reason"]]
    assert len(as_text) + len(invalid) == len(broken_samples)
    assert bad["recall"] == pytest.approx((60 - len(as_text)) / 60)
    assert bad["schema_accuracy"]["value"] == pytest.approx((60 - len(as_text) - len(invalid)) / (60 - len(as_text)))
    compared = cli("compare", data["run_id"][:8], "--reference", "clean", "--json")
    assert compared.code == 0, compared.stderr
    [diff] = compared.json()["differences"]
    versus = diff["tool_trigger_vs_reference"]
    assert diff["against"] == "clean" and versus["fn"] == len(as_text) and versus["fp"] == 0
    assert versus["f1"] == pytest.approx(bad["f1"])  # the clean route decides exactly as the labels say


def test_a_sample_answered_by_a_fallback_keeps_its_tokens_and_cost_on_its_route(cli, emulator, workdir):
    """Every request of `primary` falls back (503) to `backup`: primary's metrics carry the samples' real tokens and
    cost, each sample names the route that answered, and the fallbacks are counted by answering route; compare's
    table shows the same figures."""
    broken, healthy = emulator(faults={"unavailable": 1.0}), emulator()
    env = _routes(workdir, primary=(broken, ["backup"]), backup=(healthy, []))
    result = cli("eval", "humaneval", "--limit", "4", "--route", "primary", "--route", "backup", "--json", env=env,
                 timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    mine = [s for s in data["samples"] if s["route"] == "primary"]
    assert len(mine) == 4 and all(s["answered_by"] == ["backup"] for s in mine), mine
    assert all(s["answered_by"] == ["backup"] for s in data["samples"] if s["route"] == "backup")
    primary, backup = data["metrics"]["primary"], data["metrics"]["backup"]
    assert primary["fallbacks"] == {"requests": 4, "answered_by_fallback": {"backup": 4}}
    assert backup["fallbacks"] == {"requests": 0, "answered_by_fallback": {}}
    assert data["metrics"]["overall"]["fallbacks"]["answered_by_fallback"] == {"backup": 4}
    tokens = sum(s["tokens"] for s in mine)
    assert tokens > 0 and primary["total_tokens"]["total"] == tokens  # the route's figures are its samples' figures
    cost = primary["cost_per_accepted_usd"]
    assert cost["unpriced_calls"] == 0 and cost["total_cost_usd"] > 0  # the emulator's model is priced: never $0
    assert cost["total_cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in mine))
    assert primary["latency_avg_ms"]["n_calls"] == 4 and primary["latency_avg_ms"]["per_call"] > 0
    assert primary["first_success"]["calls"] is not None
    with _db(workdir) as db:  # the store agrees: every call made for primary's samples, whatever route answered it
        rows = db.execute("select coalesce(fallback_from, route), sum(prompt_tokens + completion_tokens) "
                          "from calls group by 1").fetchall()
        assert dict(rows)["primary"] == tokens
    compared = cli("compare", data["run_id"][:8], "--json", env=env)
    assert compared.code == 0, compared.stderr
    routes = compared.json()["routes"]
    assert routes["primary"]["total_tokens"] == primary["total_tokens"]
    assert routes["primary"]["fallbacks"] == primary["fallbacks"]
    shown = cli("compare", data["run_id"][:8], env=env)
    assert shown.code == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if "fallback route (answered by)" in x)
    assert "4 (backup 4)" in line, line
    tokens_line = next(x for x in shown.stdout.splitlines() if x.lstrip("│ ").startswith("tokens"))
    assert f"{primary['total_tokens']['prompt_tokens']} / {primary['total_tokens']['completion_tokens']}" in tokens_line


def test_fallbacks_are_counted_by_the_route_that_answered_not_every_route_tried(cli, emulator, workdir):
    """primary → [second, backup], both primary and second answering 503: only backup answered; the requests sent to
    a fallback count both tries, the answers count backup's alone."""
    first, second, healthy = emulator(faults={"unavailable": 1.0}), emulator(faults={"unavailable": 1.0}), emulator()
    env = _routes(workdir, primary=(first, ["second", "backup"]), second=(second, []), backup=(healthy, []))
    result = cli("eval", "humaneval", "--limit", "2", "--route", "primary", "--json",
                 env=env, timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    assert [s["answered_by"] for s in data["samples"]] == [["backup"], ["backup"]]
    primary = data["metrics"]["primary"]
    assert primary["fallbacks"] == {"requests": 4, "answered_by_fallback": {"backup": 2}}
    assert primary["total_tokens"]["total"] == sum(s["tokens"] for s in data["samples"]) > 0
    assert primary["samples"]["error"] == 0 and primary["error_rate"]["value"] == 0


def test_fallback_metrics_on_postgresql(cli, emulator, workdir):
    """The per-route figures are computed in SQL PostgreSQL accepts too (it has no sum of booleans: `eval` on a
    PostgreSQL store failed at its metrics with 'the store failed')."""
    from .pg import postgres_server

    broken, healthy = emulator(faults={"unavailable": 1.0}), emulator()
    env = _routes(workdir, primary=(broken, ["backup"]), backup=(healthy, []))
    with postgres_server() as url:
        result = cli("eval", "humaneval", "--limit", "2", "--route", "primary", "--json",
                     env={**env, "K2PROBE_DB_URL": url}, timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    primary = data["metrics"]["primary"]
    assert primary["fallbacks"] == {"requests": 2, "answered_by_fallback": {"backup": 2}}
    assert primary["retries"]["n"] >= 4 and primary["total_tokens"]["total"] == sum(s["tokens"] for s in data["samples"])
    assert primary["cost_per_accepted_usd"]["total_cost_usd"] > 0
    assert not (workdir / "home" / "k2probe.db").exists()
