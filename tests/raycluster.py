"""A real Ray cluster on loopback for the tests: a head and worker nodes, each `ray start --block` a process group of
its own, so one node can be killed whole and a cluster is torn down without touching another's (`ray stop` would stop
every Ray process on the machine, another test's cluster among them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import free_port

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


class Cluster:
    """A head node and worker nodes, each `ray start --block` a process group of its own."""

    def __init__(self, temp: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = temp
        self.workers: list[subprocess.Popen[bytes]] = []
        self.head = self._start(["--head", "--port", str(self.port), "--include-dashboard", "false",
                                 "--disable-usage-stats", f"--temp-dir={temp}"], before=0, env=env)

    def _start(self, args: list[str], before: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`env`: variables added to the node's environment (its Ray workers inherit them)."""
        node = subprocess.Popen([*RAY, "start", *args, "--num-cpus", "1", "--block"], env={**ENV, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 180
        while self.alive() <= before:
            if node.poll() is not None or time.monotonic() > deadline:
                self._kill(node)
                raise AssertionError(f"a Ray node did not start ({' '.join(args[:2])})")
            time.sleep(0.5)
        return node

    def add_node(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        node = self._start(["--address", self.address], before=self.alive(), env=env)
        self.workers.append(node)
        return node

    def alive(self) -> int:
        done = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], "
                               "logging_level='ERROR'); print(sum(1 for n in ray.nodes() if n['Alive']))",
                               self.address], env=ENV, capture_output=True, text=True, timeout=120)
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0

    def kill(self, node: subprocess.Popen[bytes]) -> None:
        """The node's raylet, its workers and its object store, at once."""
        self._kill(node)

    @staticmethod
    def _kill(node: subprocess.Popen[bytes]) -> None:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=60)

    def stop(self) -> None:
        for node in [*self.workers, self.head]:
            self._kill(node)


def two_nodes(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A head and one worker node, for a module's `cluster` fixture (`yield from two_nodes(tmp_path_factory)`);
    `env`: variables added to both nodes' environments."""
    made = Cluster(tmp_path_factory.mktemp("ray"), env)
    try:
        made.add_node(env)
        yield made
    finally:
        made.stop()


