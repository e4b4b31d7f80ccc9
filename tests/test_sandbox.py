"""The sandbox holds: runaway or hostile code ends as a recorded result, never a hung or crashed k2probe, and nothing it
does reaches the host: no file outside, not the workspace either, no socket, no key, no shared process budget."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from k2probe.sandbox.isolation import Limits, isolation, make_readable, run

from .conftest import venv_seeing_our_packages


@pytest.fixture
def ws(scratch):
    base = scratch("k2probe-test-ws-")
    root = base / "repo"
    root.mkdir()
    (root / "keep.txt").write_text("original\n")
    make_readable(root)
    yield root


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_isolation_is_complete_here():
    iso = isolation()
    assert iso.sandbox == "bubblewrap" and iso.network.startswith("cut"), iso
    if os.geteuid() == 0:
        assert iso.processes == "own budget (own uid)", iso


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


def test_nothing_written_reaches_the_host_not_even_the_workspace(ws, scratch):
    outside = scratch("k2probe-outside-")
    os.chmod(outside, 0o777)  # even a world-writable folder outside stays out of reach
    before = _tree(ws)
    script = (f"echo a > {outside}/evil; echo b > ../evil; echo c > $HOME/evil; echo d > /etc/evil; "
              "echo inside > ok.txt; echo changed > keep.txt; ln -s /etc/passwd link; cat ok.txt")
    result = run(script, ws)
    assert result.stdout.strip() == "inside"  # it could write its private copy
    assert not (outside / "evil").exists() and not (ws.parent / "evil").exists() and not Path("/etc/evil").exists()
    assert "Read-only file system" in result.stderr or "No such file" in result.stderr
    assert _tree(ws) == before and not (ws / "link").is_symlink()


def test_file_size_limit(ws):
    result = run("python -c 'open(\"big\", \"wb\").write(b\"x\" * (80 << 20))'", ws, Limits(file_bytes=1 << 20))
    assert not result.passed and "File too large" in result.stderr


def test_disk_cap(ws):
    """Many files under the per-file limit still cannot fill the host's disk: the private copy is a capped tmpfs."""
    script = "python -c 'import os\nfor i in range(64): open(f\"f{i}\", \"wb\").write(os.urandom(4 << 20))'"
    result = run(script, ws, Limits(disk_bytes=32 << 20))
    assert not result.passed and "No space left on device" in result.stderr
    assert _tree(ws) == {"keep.txt": b"original\n"}


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


def test_root_only_files_and_home_are_out_of_sight(ws, scratch):
    secret = scratch("k2probe-secret-") / "secret"
    secret.write_text("root-only-canary")
    secret.chmod(0o600)
    result = run(f"cat {secret}; cat /root/.bash_history; ls /home /run /var", ws)
    assert "root-only-canary" not in result.stdout and not result.passed


def _accepting(server: socket.socket) -> tuple[threading.Thread, list[object]]:
    """Accept connections on `server` in the background for up to 3 s; the list fills if anything got through."""
    server.listen()
    server.settimeout(3)
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    return thread, accepted


def test_socket_to_a_loopback_port(ws):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    thread, accepted = _accepting(listener)
    result = run(f"python -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=2)'", ws)
    thread.join()
    listener.close()
    assert accepted == [] and not result.passed
    assert "ConnectionRefusedError" in result.stderr or "Network is unreachable" in result.stderr


@pytest.mark.parametrize("folder", ["/tmp", "/run"])
def test_a_host_unix_socket_is_unreachable(ws, folder, scratch):
    path = scratch("k2probe-sock-", folder) / "open.sock"
    path.parent.chmod(0o755)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    path.chmod(0o777)
    thread, accepted = _accepting(server)
    probe = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); print('CONNECTED')"
    result = run(f"python -c \"{probe}\"", ws)
    thread.join()
    server.close()
    assert accepted == [] and "CONNECTED" not in result.stdout and not result.passed


def test_output_is_captured_and_truncated(ws):
    result = run("python -c 'print(\"x\" * 100000); print(\"THE END\")'", ws, Limits(output_bytes=4096))
    assert result.truncated and result.output_bytes > 100000 and len(result.stdout) < 5000
    assert "THE END" in result.stdout  # the tail is kept: that is where test summaries are


def test_laid_in_folders_replace_a_link_without_writing_through_it(ws, scratch):
    host = scratch("k2probe-host-")
    os.symlink(host, ws / "hidden_tests")
    hidden = scratch("k2probe-hidden-")
    (hidden / "test_h.py").write_text("def test_h():\n    pass\n")
    make_readable(hidden)
    result = run("ls -la hidden_tests; cat hidden_tests/test_h.py", ws, lay={"hidden_tests": hidden})
    assert result.passed and "def test_h" in result.stdout, result.stderr
    assert list(host.iterdir()) == []


def test_a_venv_under_tmp_runs_inside(tmp_path, scratch):
    """The interpreter is mounted wherever it lives: a venv under /tmp, over a base interpreter under /root or /usr."""
    python = venv_seeing_our_packages(scratch("k2probe-venv-"))
    venv = python.parent.parent
    script = ("import pathlib\n"
              "from k2probe.sandbox.isolation import run, make_readable\n"
              f"ws = pathlib.Path({str(scratch('k2probe-test-ws-'))!r}) / 'repo'; ws.mkdir(); make_readable(ws)\n"
              "r = run('python -c \"import sys, pytest; print(sys.prefix)\"', ws)\n"
              "print(r.exit_code, r.stdout.strip(), r.stderr.strip()[-300:])\n")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[:2] == ["0", str(venv)], done.stdout + done.stderr


def test_eight_sandboxes_forking_50_each_and_a_fork_bomb_beside_them(ws):
    fifty = ("python -c 'import os, time\npids = [os.fork() or (time.sleep(1.5), os._exit(0)) for _ in range(50)]\n"
             "[os.waitpid(p, 0) for p in pids]\nprint(\"forked\", len(pids))'")
    bomb = "python -c 'import os\nwhile True:\n  try: os.fork()\n  except OSError: pass'"
    with ThreadPoolExecutor(max_workers=9) as pool:
        bombing = pool.submit(run, bomb, ws, Limits(wall_s=8, cpu_s=8, processes=64))
        results = list(pool.map(lambda _: run(fifty, ws, Limits(wall_s=60, processes=64)), range(8)))
        bombing.result()
    for result in results:
        assert result.passed and "forked 50" in result.stdout, result.stderr[-500:]
        assert "Cannot fork" not in result.stderr and "Resource temporarily unavailable" not in result.stderr


def test_tmp_is_writable_inside(ws):
    (ws / "test_tmp.py").write_text("def test_tmp(tmp_path):\n    (tmp_path / 'f').write_text('x')\n")
    make_readable(ws)
    result = run("python -m pytest -q -p no:cacheprovider test_tmp.py", ws)
    assert result.passed, result.stdout + result.stderr


def test_a_home_folder_is_never_mounted(ws, tmp_path, monkeypatch):
    """A PATH folder inside a home is mounted alone: the home itself (keys, tokens) stays out of sight."""
    from k2probe.sandbox.runtime import Runtime

    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / ".ssh_key").write_text("home-secret-canary")
    monkeypatch.setenv("HOME", str(home))
    runtime = Runtime.own()
    runtime = Runtime(runtime.python, (str(home / "bin"), *runtime.path))
    assert str(home) not in runtime.mounts(f"cat {home}/.ssh_key")
    result = run(f"ls {home}/bin && cat {home}/.ssh_key", ws, runtime=runtime)
    assert "home-secret-canary" not in result.stdout and not result.passed


def test_the_isolation_record_says_what_filter_and_memory_cap_it_has():
    iso = isolation()
    assert iso.syscalls.startswith("system-call filter: ptrace") and "system-call filter" in iso.line()
    assert iso.memory.startswith("capped for all of a sandbox's processes") or "per process only" in iso.memory
    assert "memory" in iso.line()


PTRACE = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
          "for pid in (os.getppid(), 1):\n"
          "    print(pid, libc.ptrace(16, pid, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH\n"
          "print('vm', libc.process_vm_readv(os.getppid(), 0, 0, 0, 0, 0), ctypes.get_errno())\n")


def test_ptrace_of_the_sandbox_shell_and_its_init_is_refused(ws):
    (ws / "probe.py").write_text(PTRACE)
    make_readable(ws)
    result = run("python probe.py; echo done", ws)
    lines = result.stdout.split("\n")
    assert "done" in lines, result.stdout + result.stderr
    for line in lines[:2]:
        assert line.split()[1:] == ["-1", "1"], result.stdout  # EPERM: refused by the filter
    assert lines[2].split()[1:] == ["-1", "1"], result.stdout


def test_no_new_user_namespace_inside(ws):
    (ws / "userns.py").write_text("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                                  "print('unshare', libc.unshare(0x10000000), ctypes.get_errno())  # CLONE_NEWUSER\n")
    make_readable(ws)
    result = run("unshare -Ur id; echo rc=$?; python userns.py", ws)
    assert "rc=1" in result.stdout and "uid=0(root)" not in result.stdout, result.stdout + result.stderr
    assert "Operation not permitted" in result.stderr and "unshare -1 1" in result.stdout, result.stdout


def test_memory_is_capped_across_a_sandboxs_processes(ws):
    """4 processes × 1.5 GiB touched, each under the per-process cap (RLIMIT_AS 2 GiB): the cgroup stops them."""
    from k2probe.sandbox import cgroup

    if cgroup.problem() is not None:
        pytest.skip(f"no memory cgroup here: {cgroup.problem()}")
    hog = ("import os, time\nchildren = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
           "        block = bytearray(b'x') * (1536 * 1024 * 1024)\n        time.sleep(3)\n        os._exit(0)\n"
           "    children.append(pid)\n"
           "print('held', sum(os.waitpid(pid, 0)[1] == 0 for pid in children))\n")
    (ws / "hog.py").write_text(hog)
    make_readable(ws)
    result = run("python hog.py", ws, Limits(wall_s=60, memory_bytes=2 * 1024**3))
    held = int(result.stdout.split()[-1])
    assert held < 4 and result.killed == "memory cap (all processes together)", result


def test_the_answers_are_out_of_sight_inside(ws):
    """The shipped suites' solutions and hidden tests and HumanEval's canonical solutions live in folders the sandbox
    mounts (k2probe's package, site-packages): each is hidden by an empty folder, so no test run can copy an answer."""
    from k2probe.sandbox.isolation import answer_folders

    suites = next(f for f in answer_folders() if f.endswith("suites"))
    data = next(f for f in answer_folders() if f.endswith("data"))
    assert Path(suites, "basic", "median", "solution").is_dir() and Path(data, "HumanEval.jsonl.gz").is_file()
    result = run(f"ls -A {suites} {data}; cat {suites}/basic/median/solution/stats/central.py", ws, iso=isolation())
    assert result.exit_code != 0 and "No such file" in result.stderr
    assert "median" not in result.stdout and "HumanEval" not in result.stdout


def test_run_makes_the_workspace_readable_itself(scratch):
    """No caller has to remember make_readable: bubblewrap's `run` does it (as root the sandbox has a uid of its own,
    which could not read a 0600 file or enter a 0700 folder otherwise)."""
    root = scratch("k2probe-test-ws-") / "repo"
    (root / "inner").mkdir(parents=True)
    (root / "inner" / "secret.txt").write_text("readable\n")
    (root / "inner" / "secret.txt").chmod(0o600)
    (root / "inner").chmod(0o700)
    root.chmod(0o700)
    result = run("cat inner/secret.txt", root)
    assert result.passed and result.stdout == "readable\n", result.stderr
