"""`bench --executor ray`: a step's load workers on the nodes of an existing Ray cluster, one actor per worker pinned to
its node. The route's key never travels: each worker reads it from its own node's environment variable, whose *name*
is all the actor is given (no key in task arguments, runtime_env or Ray's records). A probe first asks every node for
its k2probe version, whether it has the variable (never its value) and whether it reaches the route's URL; a node that
cannot run is left out and said, one without the key stops the bench with the fix. Each worker's encoded histograms
come back as it finishes (ray.wait) and are added exactly on the driver; each node's own figures — requests, TTFT,
client CPU share — are kept beside the merge, and a node whose client CPU saturates is flagged, since its figures then
measure the client rather than the route."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from k2probe.core.errors import ProbeFailed, UsageError
from k2probe.core.raycluster import connect, on_every_node, pinned
from k2probe.load.step import REPORT_EVERY_S, StepPlan, StepResult, histogram, run_step

SATURATED = 0.9  # client CPU time over this share of the wall time of the cores a node's workers used
PROBE_S = 120.0  # for every node's answer to the probe
START_S = 300.0  # for every worker to start (a Python process importing k2probe, on each node)
SATURATION_MIN_S = 1.0  # a shorter step's CPU share is its workers' start-up more than its load: not judged


@dataclass(frozen=True)
class NodeCheck:
    """What the probe found on one node: never the key, only whether its variable is set there."""

    node_id: str
    address: str
    k2probe: str
    cores: int
    has_key: bool
    problem: str | None  # why no worker can run there (None: they can)


def _reach(base_url: str) -> str | None:
    """Why this machine cannot open a connection to the route's URL (None: it can, or a proxy the environment names
    takes the requests there)."""
    import socket

    import httpx2

    from k2probe.client.wire import proxy_for

    url = httpx2.URL(base_url)
    if proxy_for(url) is not None:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.host, port), timeout=5):
            return None
    except OSError as exc:
        return f"cannot reach {url.host}:{port} (the route's URL): {exc.strerror or exc}"


def _probe(version: str, key_env: str | None, base_url: str) -> NodeCheck:
    """Runs on a node: its k2probe version, its cores, whether `key_env` is set there and whether the URL answers."""
    import ray

    from k2probe import __version__

    node = ray.get_runtime_context().get_node_id()
    address = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    has_key = key_env is None or bool(os.environ.get(key_env))
    problem = f"k2probe {__version__}, not the driver's {version}" if __version__ != version else _reach(base_url)
    return NodeCheck(node, address, __version__, cores, has_key, problem)


class LoadWorker:
    """One client process on one node (an async Ray actor): the step's bodies held once, each step's share sent from
    its event loop with the key read from this node's environment, its latest progress snapshot there for `peek`."""

    def __init__(self, bodies: list[bytes], key_env: str | None) -> None:
        self.bodies = bodies
        self.key_env = key_env
        self.latest: dict[str, Any] | None = None

    async def ready(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    async def peek(self) -> dict[str, Any] | None:
        """The running share's last progress snapshot (its calls stay for `run`'s answer)."""
        return self.latest

    async def run(self, share: StepPlan) -> dict[str, Any]:
        """The share sent, encoded as a local worker's (load/step.py), plus this process's CPU time and, when calls
        are recorded, every call its progress snapshots carried."""
        from k2probe.core.config import EMULATOR_KEY

        key = os.environ.get(self.key_env, "") if self.key_env else EMULATOR_KEY
        calls: list[dict[str, Any]] = []
        self.latest = None

        def keep(snapshot: dict[str, Any]) -> None:
            calls.extend(snapshot.pop("calls", None) or [])
            self.latest = snapshot

        cpu = time.process_time()
        result = await run_step(replace(share, key=key, payloads=self.bodies), keep)
        encoded = result.encoded()
        encoded["cpu_s"] = time.process_time() - cpu
        encoded["calls"] = calls
        return encoded


def _figures(blob: str) -> dict[str, Any]:
    h = histogram()
    h.decode_and_add(base64.b64decode(blob))
    n = h.get_total_count()
    return {"p50": h.get_value_at_percentile(50) / 1000 if n else None,
            "p99": h.get_value_at_percentile(99) / 1000 if n else None, "n": n}


@dataclass
class NodeStep:
    """One node's part of a step: its workers' results merged, and the CPU they spent."""

    check: NodeCheck
    workers: int = 0
    cpu_s: float = 0.0
    result: StepResult = field(default_factory=StepResult)

    def row(self) -> dict[str, Any]:
        """The node's own figures as the outcome keeps them: counts, TTFT/latency, client CPU, its histograms."""
        encoded = self.result.encoded()
        wall = self.result.wall_s or 1e-9
        cores = max(1, min(self.workers, self.check.cores))
        share = round(self.cpu_s / (wall * cores), 3)
        return {"node": self.check.node_id[:12], "address": self.check.address, "workers": self.workers,
                "requests": self.result.sent, "ok": self.result.ok, "failed": dict(self.result.failed),
                "ttft_ms": _figures(encoded["histograms"]["ttft"]), "e2e_ms": _figures(encoded["histograms"]["e2e"]),
                "client_cpu": share, "cores_used": cores, "saturated": share > SATURATED and wall >= SATURATION_MIN_S,
                "wall_s": self.result.wall_s, "histograms": encoded["histograms"]}


class RayLoad:
    """The bench's workers on the cluster: probed nodes, `per_node` actors on each, a step spread over them."""

    def __init__(self, address: str | None, base_url: str, key_env: str | None, headers: dict[str, str],
                 bodies: list[bytes], per_node: int) -> None:
        from k2probe import __version__
        from k2probe.core.config import is_secret_header

        secret = [name for name in headers if is_secret_header(name)]
        if secret:  # its value would travel to the nodes in the workers' arguments
            raise UsageError(f"the route sends a secret header ({', '.join(secret)}) that --executor ray would have to "
                             "ship to the nodes", fix="give the key by api_key_env, or use --executor local")
        ray = connect(address)
        self._ray = ray
        checks = [answer or NodeCheck(node, "?", "?", 1, False, problem)
                  for node, answer, problem in on_every_node(ray, _probe, __version__, key_env, base_url,
                                                             timeout_s=PROBE_S)]
        self.checks = checks
        usable = [c for c in checks if c.problem is None]
        if not usable:
            said = "; ".join(f"{c.node_id[:12]}: {c.problem}" for c in checks) or "no node is alive"
            raise UsageError(f"no node of the Ray cluster can run the bench's workers ({said})",
                             fix=f"install k2probe {__version__} on the nodes and let them reach the route's URL (the "
                             "built-in emulator listens on this machine's loopback: serve `k2probe emulator --host "
                             "ADDR --allow-remote` and point the route at it), or use --executor local")
        keyless = [c for c in usable if not c.has_key]
        if keyless:
            where = ", ".join(f"{c.node_id[:12]} ({c.address})" for c in keyless)
            raise UsageError(f"{key_env} is not set on Ray node {where}: its workers would send no key",
                             fix=f"export {key_env} where `ray start` runs on that node (its workers inherit that "
                             "environment) and restart it, or use --executor local")
        self.nodes = usable
        remote = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(LoadWorker)
        # node-interleaved: a step with fewer users than workers still spreads them over every node
        self.workers: list[tuple[NodeCheck, Any]] = [
            (check, remote.options(scheduling_strategy=pinned(check.node_id)).remote(bodies, key_env))
            for _ in range(per_node) for check in usable]
        try:  # every worker up before the first step, so each step's users start together
            ray.get([actor.ready.remote() for _, actor in self.workers], timeout=START_S)
        except Exception as exc:
            raise ProbeFailed(f"the bench's workers did not start on the Ray cluster ({type(exc).__name__})",
                              fix="see `ray status` for the nodes' state, or use --executor local") from None

    def describe(self) -> dict[str, Any]:
        """The cluster as the bench's settings keep it: the nodes used, with their workers, and those left out."""
        per = {c.node_id: sum(1 for w, _ in self.workers if w.node_id == c.node_id) for c in self.nodes}
        return {"nodes": [{"node": c.node_id[:12], "address": c.address, "workers": per[c.node_id],
                           "cores": c.cores} for c in self.nodes],
                "left_out": [{"node": c.node_id[:12], "address": c.address, "why": c.problem}
                             for c in self.checks if c.problem is not None]}

    def step(self, shares: list[StepPlan], report: Any = None) -> tuple[StepResult, list[dict[str, Any]]]:
        """The shares sent by the first len(shares) workers, their results merged as they finish: the step's whole
        result and each node's own row. `report` gets each worker's recorded calls."""
        ray = self._ray
        pending = {}
        for share, (check, actor) in zip(shares, self.workers, strict=False):
            pending[actor.run.remote(replace(share, key="", payloads=[]))] = (check, actor)
        per_node = {c.node_id: NodeStep(c) for c in self.nodes}
        merged = StepResult()
        waiting = list(pending)
        while waiting:  # a worker whose node dies is ready too, with the error
            done, waiting = ray.wait(waiting, num_returns=1, timeout=REPORT_EVERY_S if report is not None else None)
            if not done and report is not None:
                self._peek([actor for ref, (_, actor) in pending.items() if ref in waiting], report)
            for ref in done:
                check = pending[ref][0]
                try:
                    encoded = ray.get(ref)
                except Exception as exc:  # the node or its worker died: the step's figures would be partial
                    raise ProbeFailed(f"Ray node {check.node_id[:12]} ({check.address}) failed during the step "
                                      f"({type(exc).__name__}): its requests are lost, so the step is no measurement",
                                      fix="rerun the bench; see `ray status` for the node") from None
                calls = encoded.pop("calls")
                node = per_node[check.node_id]
                node.workers += 1
                node.cpu_s += encoded.pop("cpu_s")
                node.result.merge(encoded)
                merged.merge(encoded)
                if report is not None:  # the worker's last word, with the calls it recorded
                    first = encoded["histograms"]["ttft" if shares[0].stream else "e2e"]
                    report({"worker": encoded["worker"], "label": shares[0].label, "sent": encoded["sent"],
                            "ok": encoded["ok"], "failed": encoded["failed"], "first": first, "calls": calls})
        return merged, [n.row() for n in per_node.values() if n.workers]

    def _peek(self, actors: list[Any], report: Any) -> None:
        """The running workers' latest snapshots to `report` (the live line); one that does not answer is skipped."""
        ray = self._ray
        refs = [actor.peek.remote() for actor in actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=REPORT_EVERY_S)
        for ref in ready:
            try:
                snapshot = ray.get(ref)
            except Exception:  # its node is failing: the step's own answer says so
                continue
            if snapshot is not None:
                report(snapshot)

    def close(self) -> None:
        for _, actor in self.workers:
            self._ray.kill(actor)
