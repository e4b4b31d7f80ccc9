"""`bench --executor ray` on a real two-node Ray cluster on loopback: the load workers on both nodes, each reading the
route's key from its own node's environment (the canary appears nowhere in Ray's records nor in the output), the
merged percentiles those of the per-node histograms added, requests counted exactly, and a node without the key's
variable one line with the fix. `.ci/run` installs the `ray` extra."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from jsonschema import Draft202012Validator

from k2probe.report.documents import json_schema

from .conftest import route_env
from .raycluster import ENV, Cluster, two_nodes

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install -e '.[ray]' (.ci/run does)")
CANARY = "sk-canary-raybench-5e3a91d0c7f2"
KEY_ENV = "AI_GATEWAY_API_KEY"  # the variable route_env names the key by


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from two_nodes(tmp_path_factory, env={KEY_ENV: CANARY})


def _node_ids(address: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level="
                           "'ERROR'); print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive']))", address],
                          env=ENV, capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def _killed(cluster: Cluster, nodes: list[subprocess.Popen[bytes]], ids: list[str]) -> None:
    """Kill nodes and wait until the cluster knows those of `ids` are gone, so the next test's probe does not wait
    for them."""
    for node in nodes:
        cluster.kill(node)
    deadline = time.monotonic() + 180
    while alive := set(ids) & _node_ids(cluster.address):
        assert time.monotonic() < deadline, f"the cluster still lists {sorted(alive)} as alive"
        time.sleep(1)


def _merged(nodes: list[dict], metric: str):
    from k2probe.load.step import histogram

    merged = histogram()
    for node in nodes:
        merged.decode_and_add(base64.b64decode(node["histograms"][metric]))
    return merged


def test_bench_on_two_nodes_merges_their_histograms_exactly_and_keeps_the_key_on_them(cli, emulator, cluster):
    server = emulator(api_key=CANARY, ttft_ms=20, itl_ms=1)
    run = cli("bench", "--concurrency", "6", "--rate", "60", "--requests", "150", "--max-tokens", "16", "--workers",
              "2", "--executor", "ray", "--ray-address", cluster.address, "--json",
              env=route_env(server, key=CANARY), timeout=600)
    assert run.code == 0, run.stderr[-3000:]
    data = run.json()
    errors = [e.message for e in Draft202012Validator(json_schema("bench")).iter_errors(data)]
    assert errors == [], errors[:3]  # the document `k2probe schema bench` publishes, its per-node parts included
    assert data["settings"]["executor"] == "ray" and data["cluster"]["left_out"] == []
    assert len(data["cluster"]["nodes"]) == 2 and all(n["workers"] == 2 for n in data["cluster"]["nodes"])
    assert len(data["steps"]) == 2
    for step in data["steps"]:
        nodes = step["nodes"]
        # work on both nodes, and every request counted once: the nodes' counts add up to the step's, as asked
        assert len({n["node"] for n in nodes}) == 2 and all(n["requests"] >= 30 for n in nodes), nodes
        assert sum(n["requests"] for n in nodes) == step["requests"] == 150
        assert sum(n["ok"] for n in nodes) == step["ok"] == 150 and step["failed"] == {}
        # the merged percentiles are those of the nodes' histograms added (not their percentiles averaged)
        for metric in ("ttft", "e2e", "itl"):
            merged = _merged(nodes, metric)
            figures = step[f"{metric}_ms"]
            assert figures["n"] == merged.get_total_count() > 0
            for p in (50, 90, 95, 99):
                assert figures[f"p{p}"] == merged.get_value_at_percentile(p) / 1000
            assert figures["max"] == merged.get_max_value() / 1000
        assert step["ttft_ms"]["n"] == 150 and 19.5 <= step["ttft_ms"]["p50"] <= 20 + 40
        for node in nodes:  # each node's own figures are its own histogram's
            own = _merged([node], "ttft")
            assert node["ttft_ms"]["n"] == own.get_total_count() == node["ok"]
            assert node["ttft_ms"]["p50"] == own.get_value_at_percentile(50) / 1000
            assert node["ttft_ms"]["p99"] == own.get_value_at_percentile(99) / 1000
            assert node["client_cpu"] > 0 and node["saturated"] == (node["client_cpu"] > 0.9 and node["wall_s"] >= 1)
        assert step["saturated_nodes"] == [n["node"] for n in nodes if n["saturated"]]
    # the proof, the warm-up and the two steps: nothing sent twice, nothing lost
    assert server.state.requests_seen == 1 + data["warmup"]["requests"] + 300

    # the key stayed in the nodes' environment: not in the output, nor in Ray's logs, job and task records or objects
    assert CANARY not in run.stdout and CANARY not in run.stderr
    for path in cluster.temp.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                assert CANARY.encode() not in handle.read(), path


def test_the_built_in_emulator_on_this_machine_serves_the_nodes_on_loopback(cli, cluster):
    run = cli("bench", "--concurrency", "4", "--requests", "40", "--no-stream", "--record-calls", "--executor", "ray",
              "--ray-address", cluster.address, "--json", timeout=600)
    assert run.code == 0, run.stderr[-3000:]
    data = run.json()
    [step] = data["steps"]
    assert data["emulated"] and step["ok"] == step["requests"] == 40
    assert len(step["nodes"]) == 2 and sum(n["requests"] for n in step["nodes"]) == 40
    shown = cli("show", data["run_id"], "--json", "--limit", "100").json()
    assert shown["calls_total"] == 40  # --record-calls: every request, from the workers of both nodes
    assert all(c["status"] == 200 and c["purpose"] == "bench c=4" for c in shown["calls"])
    text = cli("bench", "--concurrency", "2", "--requests", "20", "--executor", "ray", "--ray-address",
               cluster.address, timeout=600)
    assert text.code == 0, text.stderr[-3000:]
    assert "client CPU" in text.stdout + text.stderr and "2 Ray node(s)" in text.stdout + text.stderr


def test_each_worker_sends_its_own_nodes_key_and_a_node_without_one_is_one_line(cli, emulator, cluster):
    server = emulator(api_key=CANARY)
    env = route_env(server, key=CANARY)  # this machine's key is the right one
    before = _node_ids(cluster.address)
    added = [cluster.add_node(env={KEY_ENV: "sk-another-key-on-that-node"})]
    [odd] = _node_ids(cluster.address) - before
    ids = [odd]
    try:
        run = cli("bench", "--concurrency", "6", "--requests", "60", "--executor", "ray", "--ray-address",
                  cluster.address, "--json", env=env, timeout=600)
        assert run.code == 0, run.stderr[-3000:]
        [step] = run.json()["steps"]
        nodes = {n["node"]: n for n in step["nodes"]}
        # the workers on the odd node sent that node's key, which the server refuses; the driver's never travelled
        assert len(nodes) == 3 and nodes[odd[:12]]["requests"] == 20
        assert nodes[odd[:12]]["ok"] == 0 and nodes[odd[:12]]["failed"] == {"invalid_key": 20}
        assert all(n["ok"] == n["requests"] == 20 for name, n in nodes.items() if name != odd[:12])
        assert step["failed"] == {"invalid_key": 20} and step["ok"] == 40

        known = _node_ids(cluster.address)
        added.append(cluster.add_node())  # started without AI_GATEWAY_API_KEY in its environment
        [keyless] = _node_ids(cluster.address) - known
        ids.append(keyless)
        seen = server.state.requests_seen
        run = cli("bench", "--concurrency", "2", "--requests", "20", "--executor", "ray", "--ray-address",
                  cluster.address, env=env, timeout=600)
    finally:
        _killed(cluster, added, ids)
    assert run.code == 2, run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert KEY_ENV in lines[0] and keyless[:12] in lines[0] and odd[:12] not in lines[0]
    assert server.state.requests_seen == seen + 1  # the proof alone: no load was sent
    assert CANARY not in run.stderr + run.stdout


def test_a_node_killed_mid_step_ends_the_bench_with_one_line_not_partial_figures(emulator, workdir, cluster):
    server = emulator(api_key=CANARY, ttft_ms=100)
    before = _node_ids(cluster.address)
    doomed = cluster.add_node(env={KEY_ENV: CANARY})
    [doomed_id] = _node_ids(cluster.address) - before
    env = {**os.environ, **route_env(server, key=CANARY)}
    run = subprocess.Popen([sys.executable, "-m", "k2probe", "bench", "--concurrency", "6", "--requests", "600",
                            "--executor", "ray", "--ray-address", cluster.address, "--json"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while server.state.requests_seen < 60:  # the step under way on every node
            assert time.monotonic() < deadline and run.poll() is None, "the bench ended before a node could die"
            time.sleep(0.2)
    finally:
        _killed(cluster, [doomed], [doomed_id])
    out, err = run.communicate(timeout=300)
    assert server.state.requests_seen < 1 + 4 + 600  # the step was cut short, not finished elsewhere
    assert run.returncode == 1 and not out.strip(), (out[-1000:], err[-3000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and doomed_id[:12] in lines[0], err[-3000:]
    assert "no measurement" in lines[0]


def test_bench_imports_ray_only_when_asked_for_and_names_its_executors(cli):
    code = ("import sys; import k2probe.api, k2probe.load.bench, k2probe.cli.serve_commands; "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))))")
    done = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr[-2000:]
    unknown = cli("bench", "--executor", "spark")
    assert unknown.code == 2 and "not one of local, ray" in unknown.stderr and "Traceback" not in unknown.stderr
