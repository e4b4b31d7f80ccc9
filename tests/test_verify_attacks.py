"""`k2probe eval humaneval` against completions that try to forge their verdict or sink others': through a hostile
`--samples` file, and through a hostile model on a second route of the same eval. Wrong answers end `failed`, correct
ones `passed`, whatever the other samples or the other route's programs do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k2probe.tasks.humaneval import problems

from .sabotage import ATTACKS, KILLER, STOPPER, WRONG, HostileCoder

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="the sandbox needs bubblewrap")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_samples_file(cli, workdir, attack):
    tasks = list(problems())
    given = {tasks[0]: ATTACKS[attack], **{t: problems()[t].canonical_solution for t in tasks[1:5]},
             **dict.fromkeys(tasks[5:7], WRONG)}
    (workdir / "hostile.jsonl").write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n"
                                                  for t, c in given.items()))
    result = cli("eval", "humaneval", "--samples", "hostile.jsonl", "--json")
    assert result.code == 0, result.stderr
    outcomes = {s["task_id"]: s["outcome"] for s in result.json()["samples"]}
    expected = {tasks[0]: "failed", **dict.fromkeys(tasks[1:5], "passed"), **dict.fromkeys(tasks[5:7], "failed")}
    assert outcomes == expected
    assert "system-call filter" in result.json()["isolation"]


@pytest.mark.parametrize("completion", [STOPPER, KILLER], ids=["stop-and-kill-others", "kills-its-harness"])
def test_a_saboteur_route_cannot_sink_an_honest_route_in_the_same_eval(cli, emulator, workdir, completion):
    honest = emulator()
    with HostileCoder(completion) as saboteur:
        (workdir / "k2probe.toml").write_text(
            f"[routes.honest]\nbase_url = '{honest.base_url}'\napi_key_env = 'HONEST_KEY'\n"
            f"[routes.saboteur]\nbase_url = '{saboteur.base_url}'\napi_key_env = 'SABOTEUR_KEY'\n")
        result = cli("eval", "humaneval", "--limit", "8", "--route", "honest", "--route", "saboteur", "--json",
                     env={"HONEST_KEY": "sk-k2probe-emulator", "SABOTEUR_KEY": "sk-saboteur"}, timeout=300)
    assert result.code == 0, result.stderr
    samples = result.json()["samples"]
    by_route = {route: [s["outcome"] for s in samples if s["route"] == route] for route in ("honest", "saboteur")}
    assert by_route == {"honest": ["passed"] * 8, "saboteur": ["failed"] * 8}, [
        (s["route"], s["task_id"], s["outcome"], s["reason"]) for s in samples]


def test_an_eval_leaves_no_checker_or_cgroup_behind(workdir):
    """The checker pool is stopped at exit: no memory cgroup named after the eval's process remains, and no checker."""
    import os
    import subprocess
    import sys

    from k2probe.sandbox import cgroup

    own = cgroup._own()[0]
    if own is None:
        pytest.fail(f"this machine gives no memory cgroup: {cgroup.problem()}")
    chosen = list(problems().values())[:4]
    (workdir / "s.jsonl").write_text("".join(json.dumps({"task_id": p.task_id, "completion": WRONG}) + "\n"
                                             for p in chosen))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT"))}
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "eval", "humaneval", "--samples", "s.jsonl", "--json"],
                               cwd=workdir, env=env | {"K2PROBE_HOME": str(workdir / "home")},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=300)
    assert process.returncode in (0, 1), err
    assert [s["outcome"] for s in json.loads(out)["samples"]] == ["failed"] * 4  # it did verify, in checkers
    left = [p.name for p in own.iterdir() if p.name.startswith(f"{cgroup.PREFIX}{process.pid}-")]
    assert left == [], left
    checkers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == process.pid]
    assert checkers == []


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
