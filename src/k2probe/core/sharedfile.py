"""JSON files in K2PROBE_HOME that several k2probe processes update at once (`preflight.json`, `uploads.json`): each
update reads, changes and writes under an exclusive lock on a lock file beside it, through a temporary file and
`os.replace`, so no update is lost and a reader never sees half a file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCK_WAIT_S = 30.0  # an update is a few milliseconds: a lock held this long belongs to a stopped process


class SharedFileBusy(OSError):
    """The lock stayed taken for LOCK_WAIT_S: the update was not made (a cache then only costs a redo)."""


def read_json(path: Path, default: Any) -> Any:
    """The file's JSON, or `default` when it is missing or damaged (no lock: a replaced file is whole or absent)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return default


@contextlib.contextmanager
def _locked(path: Path, wait_s: float) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SharedFileBusy(f"{lock} stayed locked for {wait_s:.0f} s") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_json(path: Path, value: Any, *, indent: int | None = None) -> None:
    """Replace the file with `value` in one step (a temporary file beside it, then os.replace)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(value, indent=indent))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def update_json(path: Path, change: Callable[[Any], Any], default: Any, *, indent: int | None = None,
                wait_s: float = LOCK_WAIT_S) -> Any:
    """Apply `change` to the file's current JSON (`default` when missing or damaged) and write the result, all under
    the file's lock; returns what was written. SharedFileBusy if the lock could not be had in `wait_s`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, wait_s):
        value = change(read_json(path, default))
        write_json(path, value, indent=indent)
        return value
