"""`--executor ray`: generated programs judged on the nodes of an existing Ray cluster, each node in its own sandboxes.

Model calls stay on the driver (one event loop holds the streams, and the route's key never leaves this machine): only
the CPU-bound judging goes out, as Ray tasks that carry the program's text and the sandbox mode — never a key, an
environment or a runtime_env. Before the first sample a probe asks every node for its k2probe version and its sandbox;
a node that cannot judge as this machine would is left out — the run's isolation line names it and why — and never
blamed on the model. Each task is pinned to one node and not retried by Ray: when a node dies under it, the driver
sends the program to another node itself, and the driver alone records a sample's one result (the store keeps the
first), so nothing is lost or counted twice. Results are taken as they finish, never in submission order.

An agent attempt (`eval basic`) goes to one node as a whole: agent/ray_space.py holds its workspace in an actor there,
on the node `place` picks (the one holding the fewest live attempts); this module only keeps that count."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from k2probe.core.errors import UsageError
from k2probe.core.raycluster import connect, on_every_node, pinned
from k2probe.sandbox.executor import LocalExecutor
from k2probe.sandbox.isolation import Isolation

if TYPE_CHECKING:
    from k2probe.sandbox.programs import Program, ProgramVerdict

TRIES = 3  # nodes tried for one program before it is the harness's `error`


@dataclass(frozen=True)
class NodeCheck:
    """What the probe found on one node."""

    node_id: str
    k2probe: str
    sandbox: str | None  # the isolation the node would judge with, or None when it has none
    problem: str | None  # why it cannot judge (None: it can)


def _probe(mode: str, version: str) -> NodeCheck:
    """Runs on a node: its k2probe version and sandbox (SandboxUnavailable is a reason, not a crash)."""
    import ray

    from k2probe import __version__
    from k2probe.sandbox.isolation import isolation

    node = ray.get_runtime_context().get_node_id()
    try:
        iso = isolation(mode)
    except Exception as exc:
        return NodeCheck(node, __version__, None, f"no sandbox: {exc}")
    if __version__ != version:
        return NodeCheck(node, __version__, iso.sandbox, f"k2probe {__version__}, not the driver's {version}")
    return NodeCheck(node, __version__, iso.sandbox, None)


def _judge(key: str, program: Program, mode: str) -> ProgramVerdict:
    """Runs on a node: the program judged by that node's checker pool, the node named in the verdict's details."""
    import ray

    from k2probe.sandbox.isolation import isolation
    from k2probe.sandbox.programs import submit

    verdict = submit(key, program, iso=isolation(mode)).result()
    verdict.details["node"] = ray.get_runtime_context().get_node_id()[:12]
    return verdict


class RayExecutor(LocalExecutor):
    """Programs judged across the cluster's probed nodes (round robin); an agent attempt placed whole on one of them
    (agent/ray_space.py). What is left of the seam used here directly — a task's preflight, which proves its hidden
    tests and keeps the tests they must report — runs on this machine, where the results are written."""

    def __init__(self, iso: Isolation, mode: str, address: str | None = None) -> None:
        super().__init__(iso)
        ray = connect(address)
        self.mode, self._ray = mode, ray
        self.checks = self._probe_nodes()
        self.nodes = [c.node_id for c in self.checks if c.problem is None]
        if not self.nodes:
            said = "; ".join(f"{c.node_id[:12]}: {c.problem}" for c in self.checks) or "no node is alive"
            raise UsageError(f"no node of the Ray cluster can judge programs here ({said})",
                             fix="install bubblewrap and this k2probe version on the nodes, or use --executor local")
        # the run's isolation line says where programs were judged, and which nodes were left out and why
        left_out = "; ".join(f"node {c.node_id[:12]} left out: {c.problem}" for c in self.checks if c.problem)
        where = f"judged on {len(self.nodes)} Ray node(s)" + (f" ({left_out})" if left_out else "")
        attempts = (f"agent attempts: each on one of {len(self.nodes)} Ray node(s), its workspace, tool and test runs "
                    "and hidden tests in an actor there (model calls from this machine)")
        self.isolation = dataclasses.replace(iso, programs=f"{iso.programs}; {where}" if iso.programs else where,
                                             cluster=attempts)
        self._turn = itertools.count()
        self._holding: Counter[str] = Counter()  # live agent attempts by node
        # a program's judging takes a fraction of a CPU (its checker waits on the sandbox most of the time)
        self._judge = ray.remote(num_cpus=0.25, max_retries=0)(_judge)

    def _probe_nodes(self) -> list[NodeCheck]:
        from k2probe import __version__

        return [answer or NodeCheck(node, "?", None, problem)
                for node, answer, problem in on_every_node(self._ray, _probe, self.mode, __version__)]

    @property
    def ray(self) -> Any:
        """The connected `ray` module."""
        return self._ray

    def place(self) -> str | None:
        """The node for a new agent attempt: the probed node alive with the fewest live attempts (ties in turn);
        None when no node is left. The caller gives it back with `release`."""
        if not self.nodes:
            return None
        turn = next(self._turn)
        order = self.nodes[turn % len(self.nodes):] + self.nodes[:turn % len(self.nodes)]
        node = min(order, key=lambda n: self._holding[n])
        self._holding[node] += 1
        return node

    def release(self, node: str) -> None:
        self._holding[node] -= 1

    def node_alive(self, node: str) -> bool:
        """Is `node` alive now? A dead one is taken out of the nodes work goes to."""
        alive = any(n["NodeID"] == node and n.get("Alive") for n in self._ray.nodes())
        if not alive:
            self.nodes = [n for n in self.nodes if n != node]
        return alive

    async def program(self, key: str, program: Program) -> ProgramVerdict:
        from k2probe.core.results import Outcome
        from k2probe.sandbox.programs import ProgramVerdict

        failures = []
        for _ in range(min(TRIES, len(self.nodes)) or 1):
            if not self.nodes:
                break
            node = self.nodes[next(self._turn) % len(self.nodes)]
            try:
                ref = self._judge.options(scheduling_strategy=pinned(node)).remote(key, program, self.mode)
                verdict: ProgramVerdict = await ref
                return verdict
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the node died, or its worker did: another node judges it
                failures.append(f"{node[:12]}: {type(exc).__name__}")
                self.node_alive(node)
        return ProgramVerdict(Outcome.ERROR, "verification failed on the Ray cluster: " + "; ".join(failures))
