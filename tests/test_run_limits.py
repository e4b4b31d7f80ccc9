"""Time and the store bound a run: a gateway that trickles its answer a byte every 2 s ends at `eval --timeout` (and
every request at K2PROBE_REQUEST_TIMEOUT_S); a K2PROBE_HOME that fills up or turns read-only mid-run stops the run at
once with one line and exit 2, the run marked, never a traceback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from k2probe.core.profiles import Price
from k2probe.core.records import Usage, cost_of
from k2probe.recording.recorder import Recorder, StoreFailed

from .conftest import SCRUB
from .garbled import Garbled, chunk, completion

GOOD = completion(usage={"prompt_tokens": 50, "completion_tokens": 10})


def _env(server: Garbled, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    return {**env, **server.env(), "K2PROBE_HOME": str(home), "COLUMNS": "200", **extra}


def _k2probe(*args: str) -> list[str]:
    return [sys.executable, "-m", "k2probe", *args]


def _one_clean_line(stderr: str, starts: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith("k2probe:")]
    assert len(said) == 1 and said[0].startswith(starts), stderr


# time --------------------------------------------------------------------------------------------------------------
def test_a_trickling_gateway_ends_at_eval_timeout(workdir):
    with Garbled(GOOD, trickle_s=2.0) as server:
        started = time.monotonic()
        done = subprocess.run(_k2probe("eval", "humaneval", "--limit", "2", "--timeout", "3", "--json"),
                              env=_env(server, workdir / "home"), cwd=workdir, capture_output=True, text=True,
                              timeout=120)
        took = time.monotonic() - started
    assert took < 60, took  # 3 s and the start-up; a trickle of ~200 bytes at 2 s each would take minutes
    assert done.returncode == 1, done.stderr  # the thing tested did not finish: the README's rule
    _one_clean_line(done.stderr, "k2probe: eval did not finish within --timeout 3 s: 2 sample(s)")
    import json

    samples = json.loads(done.stdout)["samples"]
    assert [s["outcome"] for s in samples] == ["error", "error"]
    assert all(s["reason"].startswith("timeout: the run's --timeout of 3 s") for s in samples)
    runs = subprocess.run(_k2probe("runs", "--json"), env=_env(server, workdir / "home"), cwd=workdir,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(runs.stdout)["runs"][0]["status"] == "timed_out"


def test_eval_timeout_is_also_k2probe_timeout(workdir):
    with Garbled(GOOD, trickle_s=2.0) as server:
        started = time.monotonic()
        done = subprocess.run(_k2probe("eval", "humaneval", "--limit", "1"),
                              env=_env(server, workdir / "home", K2PROBE_TIMEOUT="3"), cwd=workdir,
                              capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert done.returncode == 1
    _one_clean_line(done.stderr, "k2probe: eval did not finish within --timeout 3 s")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_every_request_has_a_total_deadline(workdir, stream):
    """The stall timer resets on every byte; the request's own deadline does not."""
    with Garbled(GOOD, [chunk({"content": "hello"}), chunk(finish="stop")], trickle_s=2.0) as server:
        started = time.monotonic()
        done = subprocess.run(_k2probe("chat", *(["--stream"] if stream else []), "--timeout", "300", "hi"),
                              env=_env(server, workdir / "home", K2PROBE_REQUEST_TIMEOUT_S="3"), cwd=workdir,
                              capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert done.returncode == 1, done.stderr  # the server answered 200, then never finished: the route's failure
    _one_clean_line(done.stderr, "k2probe: chat failed: HTTP 200 timeout: the request's deadline of 3 s")


# the store ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(size: str) -> Iterator[Path]:
    """A tiny filesystem of its own (a tmpfs mounted here), unmounted and removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="k2probe-tmpfs-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN (as in CI's container); here: "
                    f"{(mounted.stderr or mounted.stdout).strip()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], capture_output=True)
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        folder.rmdir()


def _fill(folder: Path) -> None:
    """Write zeros until the filesystem says it is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_k2probe_home_that_fills_up_mid_run_stops_it_with_one_line(workdir):
    """An eval of 60 slow samples; after the first few, its K2PROBE_HOME (a 4 MB tmpfs) is filled up."""
    import json

    with _tmpfs("4m") as disk, Garbled(GOOD, delay_s=0.3) as server:
        env = _env(server, disk / "home")
        run = subprocess.Popen(_k2probe("eval", "humaneval", "--limit", "60", "--concurrency", "2"), env=env,
                               cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        while server.requests < 4 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert server.requests >= 4, run.communicate(timeout=60)
        _fill(disk)
        full_at, sent = time.monotonic(), server.requests
        _, stderr = run.communicate(timeout=120)
        stopped_after = time.monotonic() - full_at
        assert run.returncode == 2, stderr
        _one_clean_line(stderr, "k2probe: the store failed: database or disk is full")
        assert "check free disk space and K2PROBE_HOME" in stderr
        assert stopped_after < 30 and server.requests - sent <= 12, (stopped_after, server.requests - sent)
        (disk / "filler").unlink()
        runs = subprocess.run(_k2probe("runs", "--json"), env=env, cwd=workdir, capture_output=True, text=True,
                              timeout=60)
        assert runs.returncode == 0, runs.stderr
        status = json.loads(runs.stdout)["runs"][0]["status"]
        assert status in ("error", "interrupted"), status  # marked; `interrupted` when not even that could be written
        shown = subprocess.run(_k2probe("show", json.loads(runs.stdout)["runs"][0]["id"][:8], "--json"), env=env,
                               cwd=workdir, capture_output=True, text=True, timeout=60)
        assert json.loads(shown.stdout)["samples"].get("pending"), shown.stdout[:500]  # left for --resume


def test_a_full_k2probe_home_is_one_line_before_anything_runs(workdir):
    with _tmpfs("2m") as disk, Garbled(GOOD) as server:
        _fill(disk)
        done = subprocess.run(_k2probe("eval", "humaneval", "--limit", "2"), env=_env(server, disk / "home"),
                              cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    _one_clean_line(done.stderr, "k2probe: ")
    assert "space" in done.stderr or "full" in done.stderr, done.stderr
    assert server.requests == 0


def test_the_recorder_outlives_any_failing_write(tmp_path):
    """A write that raises anything (here: RecursionError, which used to kill the thread and leave every later flush
    waiting) stops the recording and says so at the next put; it never hangs."""
    recorder = Recorder(create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))

    def deep(_session: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    recorder.put(deep)
    with pytest.raises(StoreFailed, match="RecursionError"):
        recorder.flush()
    with pytest.raises(StoreFailed):
        recorder.put(lambda _session: None)
    with pytest.raises(StoreFailed):
        recorder.close()


def test_a_cost_is_never_negative_nor_infinite():
    price = Price(0.19, 0.95, 4.0, "test", "now")
    assert cost_of(Usage(prompt_tokens=-1_000_000, completion_tokens=5), price) is None
    assert cost_of(Usage(prompt_tokens=10**400, completion_tokens=5), price) is None  # overflows a float: unknown
    assert cost_of(Usage(prompt_tokens=1000, completion_tokens=100), price) == pytest.approx(0.00135)
