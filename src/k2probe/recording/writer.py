"""A store written from a process of its own, for a server whose latency is what it measures (the proxy): each write
is pickled on the server's thread — a snapshot, a few microseconds — and a child process does the rest (redaction,
message hashing, SQL), so none of it holds the server's GIL.

The child is `python -m k2probe.recording.writer`, a plain subprocess in a session of its own (Ctrl-C is the parent's
to act on), not a multiprocessing child: that would import the caller's main module again, and a user's script
calling k2probe without a `__main__` guard would run twice. Its stdin carries length-prefixed pickles — first the
store's URL and the secrets the parent knows (so what it writes is redacted as the parent's store would be; never on
its command line), then batches of writes. It ends when its stdin does (the parent closed it, or died: what came is
committed); a failure is one line on its stdout and exit status 1."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from collections import deque
from typing import IO, Any

from k2probe.core.records import CallRecord
from k2probe.core.redact import known_secrets
from k2probe.recording.recorder import StoreFailed

FEED_S = 0.02  # how often the writes left so far go to the child
_LENGTH = struct.Struct(">Q")


def _frame(payload: Any) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _read_frame(stream: IO[bytes]) -> Any:
    """The next pickle on `stream`; EOFError at its end (a frame cut short is its end too: the parent died mid-way)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    size = _LENGTH.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class StoreWriter:
    """The writes of one store (`url`), done by a child process: `start_sample`, `add_call`, `add_findings`."""

    def __init__(self, url: str) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "k2probe.recording.writer"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        assert self._process.stdin is not None
        self._stdin = self._process.stdin
        self._stdin.write(_frame((url, known_secrets())))  # a few hundred bytes: the pipe takes them at once
        self._stdin.flush()
        self._pending: deque[bytes] = deque()  # pickled writes not yet handed over (append, popleft: atomic)
        self._closing = threading.Event()
        self._failure: str | None = None
        self._feeder = threading.Thread(target=self._feed, name="k2probe-writer-feeder", daemon=True)
        self._feeder.start()

    # ---- the writes (the store's own signatures) -----------------------------------------------------------------
    def start_sample(self, run_id: str, suite: str, task_id: str, route: str, sample_id: str) -> None:
        self._put("start_sample", run_id, suite, task_id, route, sample_id)

    def add_call(self, run_id: str, record: CallRecord) -> None:
        self._put("add_call", run_id, record)

    def add_findings(self, run_id: str, sample_id: str | None, request: int, findings: list[dict[str, Any]]) -> None:
        self._put("add_findings", run_id, sample_id, request, findings)

    def _put(self, method: str, *args: Any) -> None:
        """Pickled here (a snapshot of the arguments), left for the feeder, which takes them every FEED_S: no thread
        is woken per write — a wake-up per call made the serving thread wait for the GIL on each."""
        if self.failure is not None:
            raise StoreFailed(self.failure)
        self._pending.append(pickle.dumps((method, args), protocol=pickle.HIGHEST_PROTOCOL))

    @property
    def failure(self) -> str | None:
        """Why the child stopped writing (None while it writes, and once it finished well)."""
        if self._failure is None and self._process.poll() not in (None, 0):
            said = self._process.stdout.read().decode("utf-8", "replace").strip() if self._process.stdout else ""
            self._failure = said or f"the store's writer process ended (code {self._process.returncode})"
        return self._failure

    def _feed(self) -> None:
        """Every FEED_S, hand what has been left to the child in one frame (this thread waits on the pipe, never the
        server's)."""
        while True:
            closing = self._closing.wait(FEED_S)
            batch = [self._pending.popleft() for _ in range(len(self._pending))]
            if batch:
                try:
                    self._stdin.write(_frame(batch))
                    self._stdin.flush()
                except (OSError, ValueError):  # the child is gone: its exit says why
                    return
            if closing and not self._pending:
                break
        self._stdin.close()

    def close(self, timeout_s: float = 120.0) -> None:
        """Every write committed (the child has ended well); raises StoreFailed when one was not."""
        self._closing.set()
        self._feeder.join(timeout_s)
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            self._failure = self._failure or f"the store's writer did not finish within {timeout_s:.0f} s"
        failure = self.failure
        if self._process.stdout is not None:
            self._process.stdout.close()
        if failure is not None:
            raise StoreFailed(failure)


def _serve(stdin: IO[bytes]) -> int:
    """The child: apply each write to a Store of its own until stdin ends, then commit what it has."""
    import signal

    from k2probe.core.redact import remember

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's to act on: the child ends when its stdin does
    url, secrets = _read_frame(stdin)
    for secret in secrets:
        remember(secret)
    from k2probe.recording.store import Store

    store = Store(url)
    try:
        while True:
            try:
                batch: list[bytes] = _read_frame(stdin)
            except EOFError:
                break
            for item in batch:
                method, args = pickle.loads(item)
                getattr(store, method)(*args)
        store.flush()
    except Exception as exc:  # one line for the parent: the run cannot be recorded on
        os.write(1, str(getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")[:300].encode())
        return 1
    finally:
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.stdin.buffer))
