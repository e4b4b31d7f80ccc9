"""The sandbox holds: runaway code ends as a recorded failure, never a hung or crashed k2probe."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from k2probe.agent.sandbox import Limits, isolation, prepare_workspace, run


@pytest.fixture
def ws():
    root = Path(tempfile.mkdtemp(prefix="k2probe-test-ws-")) / "repo"
    root.mkdir()
    prepare_workspace(root.parent)
    yield root


def test_isolation_is_complete_here():
    iso = isolation()
    assert "bubblewrap" in iso.filesystem and iso.network.startswith("cut"), iso


def test_infinite_loop(ws):
    result = run("python -c 'while True: pass'", ws, Limits(wall_s=20, cpu_s=2))
    assert not result.passed and result.killed == "CPU-time limit" and result.duration_ms < 15000


def test_hang_without_cpu(ws):
    result = run("sleep 60", ws, Limits(wall_s=1))
    assert result.timed_out and result.killed == "wall-clock limit" and result.duration_ms < 10000


def test_fork_bomb(ws):
    result = run("python -c 'import os\nwhile True: os.fork()'", ws, Limits(wall_s=10, processes=32))
    assert not result.passed and result.duration_ms < 10000
    assert "Resource temporarily unavailable" in result.stderr or result.timed_out


def test_allocating_8_gib(ws):
    result = run("python -c 'x = bytearray(8 * 1024**3)'", ws)
    assert result.exit_code == 1 and "MemoryError" in result.stderr


def test_writing_outside_the_workspace(ws):
    outside = Path(tempfile.mkdtemp(prefix="k2probe-outside-"))
    os.chmod(outside, 0o777)  # even a world-writable folder outside stays out of reach
    script = (f"echo a > {outside}/evil; echo b > ../evil; echo c > $HOME/evil; echo d > /etc/evil; "
              "echo inside > ok.txt")
    result = run(script, ws)
    assert (ws / "ok.txt").read_text() == "inside\n"
    assert not (outside / "evil").exists() and not (ws.parent / "evil").exists() and not Path("/etc/evil").exists()
    assert "Read-only file system" in result.stderr


def test_file_size_limit(ws):
    result = run("python -c 'open(\"big\", \"wb\").write(b\"x\" * (80 << 20))'", ws, Limits(file_bytes=1 << 20))
    assert not result.passed and "File too large" in result.stderr


def test_api_key_cannot_be_read(ws, monkeypatch):
    canary = "sk-sandbox-canary-1234567890"
    monkeypatch.setenv("AI_GATEWAY_API_KEY", canary)
    monkeypatch.setenv("MOONSHOT_API_KEY", canary)
    script = ("python -c \"import os; print(dict(os.environ)); "
              "print([open(f'/proc/{p}/environ','rb').read() for p in os.listdir('/proc') if p.isdigit()])\"; "
              f"cat /proc/{os.getpid()}/environ; env")
    result = run(script, ws)
    assert canary not in result.stdout + result.stderr
    assert "PATH=" in result.stdout  # it did run and print its environment


def test_socket_to_a_loopback_port(ws):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(3)
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(listener.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    result = run(f"python -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=2)'", ws)
    thread.join()
    listener.close()
    assert accepted == [] and not result.passed
    assert "ConnectionRefusedError" in result.stderr or "Network is unreachable" in result.stderr


def test_output_is_captured_and_truncated(ws):
    result = run("python -c 'print(\"x\" * 100000); print(\"THE END\")'", ws, Limits(output_bytes=4096))
    assert result.truncated and result.output_bytes > 100000 and len(result.stdout) < 5000
    assert "THE END" in result.stdout  # the tail is kept: that is where test summaries are
