"""Hidden tests the code under test cannot fool, or that notice when it tries.

The tests run under k2probe's guarded pytest runner (guard/run_pytest.py: `python -I`, pytest imported in full before
the repository is on sys.path, the hidden tests read from a read-only mount). Its records come back through a FIFO the
sandbox can only write, opened before any code under test runs, and the verdict is decided here, outside the
sandbox, from those records checked against what k2probe observes itself: the sandbox run's exit status and the test
ids known in advance (from the preflight). Printed text never decides anything. A run the code under test ended or
bent is `failed` (with reason `tampering` when it tried to pass); `error` only when the runner never started."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import select
import shlex
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2probe.core.liveness import mark_owner
from k2probe.sandbox.isolation import Isolation, Limits, SandboxResult, run
from k2probe.sandbox.outcome import PROOF_CHARS, Verification
from k2probe.sandbox.runtime import Runtime

RUNNER = Path(__file__).resolve().parent / "guard" / "run_pytest.py"
CHANNEL_CAP = 8 * 1024**2  # more records than this is not a test run: the rest is read and dropped
GUARD_LINE = "guarded: k2probe's own pytest (python -I), records on a write-only channel, checked against exit status"
ACCEPTED = {"passed": {"passed"}, "skipped": {"skipped", "passed"}, "xfailed": {"xfailed", "passed"},
            "xpassed": {"xpassed", "passed"}}
Expected = Mapping[str, str]  # test id → its outcome under the reference solution


@dataclass(frozen=True)
class GuardedRuntime(Runtime):
    """A runtime that also mounts, read-only, the folders the guarded run needs: the runner, the hidden tests, the
    channel's folder."""

    extra: tuple[str, ...] = ()

    def mounts(self, command: str) -> list[str]:
        return sorted(set(super().mounts(command)) | set(self.extra))


class Channel:
    """Two FIFOs in a folder of their own, mounted read-only: `verdict`, which the sandbox may only open for writing
    (mode 0222 on a read-only mount: no reading, no chmod), drained by a thread while the sandbox runs; and `key`,
    which holds a fresh key for the runner to read once before any code under test runs (then it is empty)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="k2probe-out-")).resolve()
        mark_owner(self.folder)
        self.folder.chmod(0o755)
        self.path = self.folder / "verdict"
        self.key = secrets.token_bytes(16).hex().encode()
        os.mkfifo(self.path, 0o600)
        os.mkfifo(self.folder / "key", 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)  # held open: a writer never blocks on open
        self.key_fd = os.open(self.folder / "key", os.O_RDWR | os.O_NONBLOCK)
        os.write(self.key_fd, self.key)
        self.path.chmod(0o222)
        (self.folder / "key").chmod(0o444)
        self.data = bytearray()
        self.overflow = False
        self.records: list[dict[str, Any]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _read_once(self) -> bool:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        if len(self.data) + len(chunk) > CHANNEL_CAP:
            self.overflow = True
        else:
            self.data += chunk
        return bool(chunk)

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self._stop.is_set():
            if poller.poll(100):
                self._read_once()

    def _record(self, line: str, index: int) -> dict[str, Any]:
        """A record whose signature and sequence number hold; else a `forged` one."""
        try:
            outer = json.loads(line)
            body = outer["body"]
            good = hmac.compare_digest(hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest(), outer["mac"])
            record = json.loads(body) if good else None
        except (ValueError, TypeError, KeyError, AttributeError):
            record = None
        if not isinstance(record, dict) or record.get("seq") != index:
            return {"event": "forged"}
        return record

    def close(self) -> list[dict[str, Any]]:
        """Stop, read what is left, and return the records (a line that is not a JSON object is a record too)."""
        if self.records is not None:
            return self.records
        self._stop.set()
        self._thread.join()
        while self._read_once():
            pass
        os.close(self.fd)
        os.close(self.key_fd)
        shutil.rmtree(self.folder, ignore_errors=True)
        records = [self._record(line, index) for index, line in
                   enumerate(bytes(self.data).decode("utf-8", "replace").splitlines())]
        if self.overflow:
            records.append({"event": "overflow"})
        self.records = records
        return records


@contextlib.contextmanager
def channel() -> Iterator[Channel]:
    opened = Channel()
    try:
        yield opened
    finally:
        opened.close()


@dataclass
class GuardedRun:
    """One guarded run: its verdict, and each test's outcome as the runner reported it (a preflight keeps those of
    the reference solution as the expected tests)."""

    verification: Verification
    outcomes: dict[str, str] = field(default_factory=dict)
    collect_errors: list[str] = field(default_factory=list)


def run_hidden(workspace: Path, hidden: Path, limits: Limits, iso: Isolation, runtime: Runtime,
               expected: Expected | None, shown: str) -> GuardedRun:
    """The hidden tests at `hidden` on a private copy of `workspace`, under the guarded runner; `shown` is the
    command as the task names it."""
    hidden = hidden.resolve()
    with channel() as chan:
        guarded = GuardedRuntime(runtime.python, runtime.path, runtime.virtual_env,
                                 (str(RUNNER.parent), str(hidden), str(chan.folder)))
        command = " ".join(shlex.quote(word) for word in
                           (runtime.python, "-I", str(RUNNER), str(chan.folder), str(hidden), "."))
        result = run(command, workspace, limits, iso, lay={hidden.name: hidden}, runtime=guarded)
        records = chan.close()
    return decide(result, records, expected, runtime, limits, shown)


def _no_start(result: SandboxResult, records: list[dict[str, Any]], runtime: Runtime) -> str:
    """Why the runner never started (no code under test ran yet): the harness's or the machine's fault."""
    harness = next((r for r in records if r.get("event") == "harness"), None)
    if harness is not None and harness.get("reason") == "no_pytest":
        return (f"pytest is not installed for {runtime.python} (pip install pytest, or pass --python with one that "
                f"has it): {str(harness.get('detail', ''))[:200]}")
    if result.exit_code == 125:
        return "the sandbox could not lay the workspace into its private copy (over the disk cap?)"
    if result.timed_out:
        return "the guarded test runner did not start within the time limit"
    return f"the guarded test runner could not start ({result.summary()})"


def decide(result: SandboxResult, records: list[dict[str, Any]], expected: Expected | None, runtime: Runtime,
           limits: Limits, shown: str) -> GuardedRun:
    """The verdict from the runner's records and the run's exit status; `expected` None when no preflight could say
    which tests there are (then every test that ran must pass, and at least one must)."""
    output = (result.stdout + ("\n" + result.stderr if result.stderr.strip() else ""))[-PROOF_CHARS:]
    count = f"{len(expected)} expected tests" if expected is not None else "expected tests unknown"
    guard = f"{GUARD_LINE}; {count}"
    events = [str(r.get("event")) for r in records]
    tests = [(str(r.get("id")), str(r.get("outcome"))) for r in records if r.get("event") == "test"]
    outcomes = dict(tests)
    errors = [str(r.get("id")) for r in records if r.get("event") == "collect_error"]

    def verdict(status: str, reason: str, tampering: bool = False) -> GuardedRun:
        return GuardedRun(Verification(status, reason, shown, output, result.duration_ms, guard, tampering),
                          outcomes, errors)

    if "started" not in events or ("harness" in events and events.index("harness") < events.index("started")):
        return verdict("error", _no_start(result, records, runtime))
    tampering = _tampering(result, records, events, tests, expected, errors)
    if tampering:
        return verdict("failed", "tampering: " + "; ".join(tampering[:4]), True)
    if result.timed_out:
        return verdict("failed", f"hidden tests timed out after {limits.wall_s:.0f} s")
    if "finished" not in events:
        return verdict("failed", f"the code under test ended the test runner before it finished ({result.summary()})")
    if errors:
        return verdict("failed", f"hidden tests could not be collected: {', '.join(errors[:3])}")
    wanted = expected if expected is not None else {name: "passed" for name, _ in tests}
    bad = sorted(name for name, want in wanted.items() if outcomes.get(name) not in ACCEPTED.get(want, {want}))
    if bad or not wanted or result.exit_code != 0:
        which = ", ".join(f"{name.rpartition('::')[2]} {outcomes.get(name, 'missing')}" for name in bad[:4])
        return verdict("failed", f"hidden tests failed: {len(bad)} of {len(wanted)} ({which or result.summary()})")
    return verdict("passed", "hidden tests passed")


def _tampering(result: SandboxResult, records: list[dict[str, Any]], events: list[str],
               tests: list[tuple[str, str]], expected: Expected | None, errors: list[str]) -> list[str]:
    """What shows the code under test bent the run rather than failed it."""
    found: list[str] = []
    if events[0] != "started" or events.count("started") != 1:
        found.append("records before or besides the runner's start")
    if {"forged", "overflow"} & set(events) or "harness" in events:
        found.append("records on the verdict channel that the runner did not write")
    finished = [r for r in records if r.get("event") == "finished"]
    if len(finished) > 1 or (finished and events[-1] != "finished"):
        found.append("records after the runner finished")
    if finished:
        last = finished[-1]
        if last.get("exitstatus") != result.exit_code:
            found.append(f"the runner finished with status {last.get('exitstatus')!r} but the sandbox run ended "
                         f"with {result.summary()}")
        problems = last.get("problems")
        if problems:
            found.append("pytest's internals were changed by the code under test: " + ", ".join(map(str, problems))[:300])
    elif result.exit_code == 0:
        found.append("the run ended with exit 0 before the runner finished (os._exit by the code under test?)")
    ids = Counter(name for name, _ in tests)
    if twice := sorted(name for name, n in ids.items() if n > 1):
        found.append(f"tests reported more than once: {', '.join(twice[:3])}")
    if expected is not None:
        if unknown := sorted(set(ids) - set(expected)):
            found.append(f"tests that are not among the hidden tests: {', '.join(unknown[:3])}")
        missing = sorted(set(expected) - set(ids))
        if missing and finished and not errors and finished[-1].get("exitstatus") == 0:
            found.append(f"{len(missing)} hidden tests never reported, yet the run says it passed")
    return found
