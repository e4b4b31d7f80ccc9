"""k2probe's guarded pytest runner, run inside the sandbox as `python -I run_pytest.py FOLDER TESTS REPO`.

Isolated mode (-I: no working folder on sys.path, PYTHON* variables ignored) and pytest imported in full before the
repository is put on sys.path, so the code under test cannot shadow pytest. Its records go, as JSON lines, to
FOLDER/verdict, a FIFO it can only write, opened before any code under test runs; each is signed (HMAC, with a
sequence number) by a key read once from FOLDER/key, a FIFO the host filled and nothing can read again. Records:
`harness` (pytest cannot be imported: no model code has run), `started`, `collected`, one `test` per test, and
`finished` with the identity checks of pytest's internals and of this runner. The host checks them against the
sandbox's exit status; what a record claims is never enough. Uses only the standard library and pytest."""

from __future__ import annotations

import sys

HERE = sys.path.pop(0)  # this script's folder: nothing to import from it, nothing for the repository to shadow

import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import types  # noqa: E402
from typing import Any  # noqa: E402

Snapshot = dict[str, tuple[int, int]]
WATCHED = ("pytest", "_pytest", "pluggy", "iniconfig", "__main__")


def _open_channel(folder: str) -> tuple[int, bytes]:
    """The verdict FIFO, and the key the host left in the key FIFO (read once: then it is gone)."""
    key_fd = os.open(os.path.join(folder, "key"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        key = os.read(key_fd, 64)
    finally:
        os.close(key_fd)
    if len(key) != 32:
        raise SystemExit(4)  # no key, no verdict: the host sees no start, the harness's fault
    return os.open(os.path.join(folder, "verdict"), os.O_WRONLY | os.O_CLOEXEC), key


def _preload() -> list[types.ModuleType]:
    """pytest and everything of it that could be imported lazily, so nothing of it is found later on sys.path."""
    import importlib
    import pkgutil

    import _pytest
    import pluggy
    import pytest

    loaded = [pytest, _pytest, pluggy]
    for package in (_pytest, pluggy):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            try:
                loaded.append(importlib.import_module(info.name))
            except Exception:  # an optional part (one needing a missing extra) is simply not preloaded
                continue
    return loaded


def _functions(owner: Any, prefix: str, found: Snapshot) -> None:
    for name, value in list(vars(owner).items()):
        target = value.__func__ if isinstance(value, classmethod | staticmethod) else value
        if isinstance(target, types.FunctionType):
            found[f"{prefix}.{name}"] = (id(target), id(target.__code__))
        elif isinstance(target, type) and target.__module__ == getattr(owner, "__name__", None):
            found[f"{prefix}.{name}"] = (id(target), 0)
            _functions(target, f"{prefix}.{name}", found)


def snapshot() -> Snapshot:
    """Every function (and its code object) and class of pytest, pluggy and this runner, by identity."""
    found: Snapshot = {}
    for name, module in sorted(sys.modules.items()):
        if module is not None and name.split(".")[0] in WATCHED:
            found[f"module {name}"] = (id(module), 0)
            _functions(module, name, found)
    return found


class Guard:
    """The pytest plugin: one record per collected test, from its own report phases."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.phases: dict[str, list[tuple[str, str, bool]]] = {}
        self.plugins_before: set[int] = set()
        self.plugins_after: set[int] = set()
        self.reported = 0

    def pytest_collection(self, session: Any) -> None:  # called before pytest's own collection: no test imported yet
        self.plugins_before = {id(p) for p in session.config.pluginmanager.get_plugins()}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.send({"event": "collect_error", "id": report.nodeid})

    def pytest_collection_finish(self, session: Any) -> None:
        self.send({"event": "collected", "ids": [item.nodeid for item in session.items]})

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.phases.setdefault(report.nodeid, []).append((report.when, report.outcome, hasattr(report, "wasxfail")))

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        phases = self.phases.pop(nodeid, [])
        outcomes = {outcome for _, outcome, _ in phases}
        xfail = any(flag for _, _, flag in phases)
        if "failed" in outcomes or not phases:
            outcome = "failed"
        elif "skipped" in outcomes:
            outcome = "xfailed" if xfail else "skipped"
        else:
            outcome = "xpassed" if xfail else "passed"
        self.reported += 1
        self.send({"event": "test", "id": nodeid, "outcome": outcome})

    def pytest_sessionfinish(self, session: Any) -> None:
        self.plugins_after = {id(p) for p in session.config.pluginmanager.get_plugins()}


def main() -> int:
    folder, tests, repo = sys.argv[1:4]
    fd, key = _open_channel(folder)
    sequence = [0]
    sign, dumps, write, sha256 = hmac.new, json.dumps, os.write, hashlib.sha256

    def send(record: dict[str, Any]) -> None:
        body = dumps({**record, "seq": sequence[0]}, sort_keys=True)
        sequence[0] += 1
        data = (dumps({"body": body, "mac": sign(key, body.encode(), sha256).hexdigest()}) + "\n").encode()
        while data:
            data = data[write(fd, data):]

    try:
        loaded = _preload()
    except ImportError as exc:  # before any code under test: the harness's own problem
        send({"event": "harness", "reason": "no_pytest", "detail": f"{type(exc).__name__}: {exc}"})
        return 3
    import pytest

    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        os.environ.pop(name, None)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    take = snapshot  # kept here: a later replacement of the module's function is not what checks
    before = take()
    modules = {name: id(module) for name, module in sys.modules.items() if name.split(".")[0] in WATCHED}
    guard = Guard(send)
    sys.path.insert(0, os.path.abspath(repo))  # the repository's modules, as `python -m pytest` in its root finds them
    args = [tests, "-q", "-p", "no:cacheprovider", "--noconftest", "-c", os.devnull, "--rootdir", tests]
    send({"event": "started", "pid": os.getpid(), "pytest": pytest.__version__, "watched": len(before),
          "preloaded": len(loaded)})
    code = int(pytest.main(args, plugins=[guard]))
    after = take()
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    added_modules = sorted(k for k, v in modules.items() if id(sys.modules.get(k)) != v)
    problems = [f"changed: {name}" for name in changed[:10]] + [f"module replaced: {m}" for m in added_modules[:5]]
    if guard.plugins_after - guard.plugins_before:
        problems.append(f"{len(guard.plugins_after - guard.plugins_before)} plugin(s) registered by the code under test")
    send({"event": "finished", "exitstatus": code, "reported": guard.reported, "problems": problems})
    os.close(fd)
    return code


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # no exit handler the code under test registered runs after the verdict was sent
