"""`eval basic --executor ray` on a real two-node Ray cluster on loopback (`ray start --head` plus a second `ray start
--address` on this machine): each agent attempt's workspace, tool runs and hidden tests held by an actor on one node,
the model asked from the driver. The local verdicts (passes, failures, tampering caught) with work on both nodes; a
node killed mid-run costing no sample its one result, a sample caught there the harness's `error` naming the node; no
key anywhere in Ray's files. `.ci/run` installs the `ray` extra."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k2probe.tasks.shipped import Task, load_suite, task_in_text

from .conftest import route_env
from .hostile import HostileModel
from .raycluster import ENV, Cluster, two_nodes
from .test_repo_attacks import attack_files

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install -e '.[ray]' (.ci/run does)")
pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="the sandbox needs bubblewrap")
CANARY = "sk-canary-raybasic-5e2a9c1d7f30"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from two_nodes(tmp_path_factory)


def _script(task: Task) -> list[tuple[str, dict[str, Any]]]:
    """By the task's place in the suite: the reference fix (passed), pytest's report patched to pass (failed,
    tampering), or nothing written (failed)."""
    place = [t.id for t in load_suite("basic")].index(task.id) % 3
    if place == 0:
        return [("write_file", {"path": p.relative_to(task.solution).as_posix(), "content": p.read_text()})
                for p in sorted(task.solution.rglob("*")) if p.is_file()]
    if place == 1:
        module = task.statement.split(":")[0]
        return [("write_file", {"path": p, "content": c})
                for p, c in sorted(attack_files("patched-report", task.id, module).items())]
    return []


class MixedModel(HostileModel):
    """A model for the whole basic suite that answers each task by `_script` (one file per turn, then finish),
    holding no state between requests (they come concurrently)."""

    def __init__(self) -> None:
        super().__init__([])

    def answer(self, index: int) -> dict[str, Any]:
        messages = self.requests[index]["messages"]
        task = task_in_text("\n".join(str(m.get("content")) for m in messages if m.get("role") == "user"))
        assert task is not None
        script = _script(task)
        done = sum(1 for m in messages if m.get("role") == "tool")
        name, arguments = script[done] if done < len(script) else ("finish", {"summary": "done"})
        call = {"id": f"call_{done}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        message = {"role": "assistant", "content": "", "reasoning_content": f"I call {name}.", "tool_calls": [call]}
        return {"id": f"chatcmpl-{index}", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}


def _nodes(run_id: str) -> Counter[str]:
    """How many of the run's samples each node's attempts judged (from each verdict's details)."""
    from k2probe.recording.store import Store

    store = Store()
    try:
        return Counter(str((s.verdict.details if s.verdict else {}).get("node")) for s in store.samples(run_id))
    finally:
        store.dispose()


def _node_ids(address: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level="
                           "'ERROR'); print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive']))", address],
                          env=ENV, capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def _under_way(workdir: Path) -> int:
    """Attempts that have made a model call and not ended (their trajectory has a step and no outcome yet)."""
    count = 0
    for path in (workdir / "home" / "trajectories").glob("*.jsonl"):
        kinds = [json.loads(line).get("type") for line in path.read_text().splitlines() if line.endswith("}")]
        count += "step" in kinds and "outcome" not in kinds
    return count


def test_basic_on_two_nodes_gives_the_local_verdicts_and_keeps_the_key_out_of_ray(cli, workdir, cluster):
    """The same model on both executors, a key that must reach Ray nowhere; then one `agent --executor ray`."""
    model = MixedModel().start()
    env = {"AI_GATEWAY_BASE_URL": model.base_url, "AI_GATEWAY_API_KEY": CANARY}
    before = set(Path(tempfile.gettempdir()).glob("k2probe-ws-task-*"))
    try:
        local = cli("eval", "basic", "--json", env=env, timeout=600)
        far = cli("eval", "basic", "--executor", "ray", "--ray-address", cluster.address, "--json", env=env,
                  timeout=600)
        one = cli("agent", "--task", "median", "--executor", "ray", "--ray-address", cluster.address, "--json",
                  env=env, timeout=300)
    finally:
        model.stop()
    assert local.code == 0 and far.code == 0, (local.stderr[-2000:], far.stderr[-2000:])  # no error: exit 0
    mine = {s["task_id"]: (s["outcome"], s["reason"]) for s in local.json()["samples"]}
    theirs = {s["task_id"]: (s["outcome"], s["reason"]) for s in far.json()["samples"]}
    assert len(mine) == 12 and theirs == mine  # the same 12 verdicts, reasons and all
    assert Counter(o for o, _ in mine.values()) == {"passed": 4, "failed": 8}
    assert sum(r.startswith("tampering: ") for _, r in mine.values()) == 4  # caught on the nodes as it is here
    assert "agent attempts: each on one of 2 Ray node(s)" in far.json()["isolation"]
    nodes = _nodes(far.json()["run_id"])
    assert len(nodes) == 2 and all(n >= 2 for n in nodes.values()), nodes  # work on both nodes
    assert set(nodes) <= {n[:12] for n in _node_ids(cluster.address)}
    assert set(Path(tempfile.gettempdir()).glob("k2probe-ws-task-*")) <= before  # each node removed what it held
    # `agent --executor ray`: one attempt on one node, its tampering caught there (exit 1: the model's failure)
    assert one.code == 1, one.stderr[-2000:]
    verification = one.json()["verification"]
    assert verification["status"] == "failed" and verification["reason"] == mine["median"][1]
    assert one.json()["isolation"]["node"] in {n[:12] for n in _node_ids(cluster.address)}
    for path in cluster.temp.rglob("*"):  # Ray's logs, job and task records, spilled objects
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                assert CANARY.encode() not in handle.read(), path


def test_a_node_killed_mid_run_ends_its_attempts_as_errors_naming_it(cli, emulator, workdir, cluster):
    """Three nodes, two attempts on each: one node killed while its attempts are under way."""
    from k2probe.recording.store import Store

    before = _node_ids(cluster.address)
    doomed = cluster.add_node()
    doomed_id = (_node_ids(cluster.address) - before).pop()[:12]
    server = emulator(ttft_ms=600)
    env = {**os.environ, **route_env(server)}
    run = subprocess.Popen([sys.executable, "-m", "k2probe", "eval", "basic", "--executor", "ray",
                            "--ray-address", cluster.address, "--concurrency", "6", "--json"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _under_way(workdir) < 6:  # every node holds two attempts past their first model call: kill one node
        assert time.monotonic() < deadline and run.poll() is None, "the run ended before a node could be killed"
        time.sleep(0.2)
    cluster.kill(doomed)
    out, err = run.communicate(timeout=600)
    assert run.returncode in (0, 1) and out.lstrip().startswith("{"), err[-3000:]
    data = json.loads(out)
    samples = data["samples"]
    assert len(samples) == 12 and len({s["task_id"] for s in samples}) == 12  # none lost, none twice
    errors = [s for s in samples if s["outcome"] == "error"]
    assert errors, ("no attempt was caught on the killed node", doomed_id, _nodes(data["run_id"]), err[-2000:])
    assert all(s["outcome"] in ("passed", "error") for s in samples), samples  # never the model's `failed`
    for sample in errors:
        assert doomed_id in sample["reason"] and "lost mid-attempt" in sample["reason"], sample["reason"]
    store = Store()
    try:
        assert store.find_run(data["run_id"]).status == "finished"
    finally:
        store.dispose()


def test_a_task_reaches_a_node_as_its_files_links_kept_caches_left_out(tmp_path):
    from k2probe.agent.ray_space import pack, unpack

    source = tmp_path / "repo"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    (source / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"cache")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    (source / "link").symlink_to("/etc/passwd")
    os.mkfifo(source / "pipe")
    rebuilt = tmp_path / "rebuilt"
    unpack(pack(source), rebuilt)
    assert sorted(p.relative_to(rebuilt).as_posix() for p in rebuilt.rglob("*")) == ["link", "pkg", "pkg/mod.py",
                                                                                   "run.sh"]
    assert (rebuilt / "link").is_symlink() and os.readlink(rebuilt / "link") == "/etc/passwd"  # a link, not its text
    assert os.access(rebuilt / "run.sh", os.X_OK) and (rebuilt / "pkg" / "mod.py").read_text() == "x = 1\n"
    with pytest.raises(ValueError, match="leaves its folder"):
        unpack([("../escape", "f", b"x", 0o644)], tmp_path / "again")

