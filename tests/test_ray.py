"""`eval --executor ray` on a real two-node Ray cluster on loopback (`ray start --head` plus a second `ray start
--address` on this machine): the same verdicts as the local executor with work on both nodes, a node killed mid-run
costing no sample its one result, and no key anywhere in Ray's records. `.ci/run` installs the `ray` extra."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import free_port, route_env
from .raycluster import Cluster, two_nodes

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install -e '.[ray]' (.ci/run does)")
pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="the sandbox needs bubblewrap")
CANARY = "sk-canary-ray-7c1f9e02b4d6"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from two_nodes(tmp_path_factory)


def _nodes(workdir: Path, run_id: str) -> dict[str, int]:
    from collections import Counter

    from k2probe.recording.store import Store

    store = Store()
    try:
        return dict(Counter(str((s.verdict.details if s.verdict else {}).get("node")) for s in store.samples(run_id)))
    finally:
        store.dispose()


def test_humaneval_on_two_nodes_gives_the_local_verdicts_and_keeps_every_key_out_of_ray(cli, emulator, workdir,
                                                                                      cluster):
    from k2probe.tasks.humaneval import problems

    lines = [json.dumps({"task_id": task, "completion": p.canonical_solution if i % 4 else "    return None\n"})
             for i, (task, p) in enumerate(problems().items())]
    (workdir / "samples.jsonl").write_text("\n".join(lines) + "\n")
    local = cli("eval", "humaneval", "--samples", "samples.jsonl", "--json", timeout=900)
    assert local.code == 0, local.stderr[-2000:]
    far = cli("eval", "humaneval", "--samples", "samples.jsonl", "--executor", "ray", "--ray-address",
              cluster.address, "--json", timeout=900)
    assert far.code == 0, far.stderr[-2000:]
    mine = {s["task_id"]: s["outcome"] for s in local.json()["samples"]}
    theirs = {s["task_id"]: s["outcome"] for s in far.json()["samples"]}
    assert len(mine) == 164 and theirs == mine  # the same 164 verdicts, 41 failures among them
    assert "judged on 2 Ray node(s)" in far.json()["isolation"]  # the run says where its programs were judged
    assert sum(o == "failed" for o in mine.values()) == 41
    nodes = _nodes(workdir, far.json()["run_id"])
    assert len(nodes) == 2 and all(n > 20 for n in nodes.values()), nodes  # work on both nodes

    # a route with a key: the model is asked from here, only programs go to the cluster
    keyed = cli("eval", "humaneval", "--limit", "12", "--executor", "ray", "--ray-address", cluster.address,
                env=route_env(emulator(api_key=CANARY), key=CANARY), timeout=600)
    assert keyed.code == 0, keyed.stderr[-2000:]
    for path in cluster.temp.rglob("*"):  # Ray's logs, job and task records, spilled objects
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                assert CANARY.encode() not in handle.read(), path


def test_a_node_killed_mid_run_costs_no_sample_its_one_result(cli, emulator, workdir, cluster):
    from k2probe.recording.store import Store

    doomed = cluster.add_node()
    server = emulator(ttft_ms=150)
    env = {**os.environ, **route_env(server)}
    run = subprocess.Popen([sys.executable, "-m", "k2probe", "eval", "humaneval", "--limit", "100", "--executor",
                            "ray", "--ray-address", cluster.address, "--concurrency", "4", "--json"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    done = 0
    while not 15 <= done <= 70:  # kill the node while the run is under way: some judged, the rest to come
        assert time.monotonic() < deadline and run.poll() is None, "the run ended before a node could be killed"
        time.sleep(0.3)
        store = Store()
        try:
            runs = [r for r in store.runs(5) if r.command == "eval" and r.status == "running"]
            done = sum(n for o, n in store.sample_outcomes(runs[0].id).items() if o != "pending") if runs else 0
        finally:
            store.dispose()
    cluster.kill(doomed)
    out, err = run.communicate(timeout=900)
    assert run.returncode == 0 and out.strip(), err[-3000:]
    assert out.lstrip().startswith("{"), out[:1500]  # stdout holds the document alone
    data = json.loads(out)
    samples = data["samples"]
    assert len(samples) == 100 and len({s["task_id"] for s in samples}) == 100  # none lost, none twice
    assert all(s["outcome"] == "passed" for s in samples), [s for s in samples if s["outcome"] != "passed"][:3]
    assert len(_nodes(workdir, data["run_id"])) == 3  # the killed node had judged its share before it died
    store = Store()
    try:
        assert store.find_run(data["run_id"]).status == "finished"
    finally:
        store.dispose()


def test_without_ray_or_a_cluster_the_executor_is_one_line(cli, workdir):
    nowhere = cli("eval", "humaneval", "--limit", "1", "--executor", "ray", "--ray-address",
                  f"127.0.0.1:{free_port()}", timeout=300)
    assert nowhere.code == 2 and "Ray cluster" in nowhere.stderr and "Traceback" not in nowhere.stderr
    unknown = cli("eval", "humaneval", "--limit", "1", "--executor", "spark")
    assert unknown.code == 2 and "not one of local, ray" in unknown.stderr
