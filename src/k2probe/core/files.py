"""Files a user names, read and written without surprises: only a regular file is read (a FIFO would wait forever, a
device never ends), within a size bound; an output goes only where a regular file is or can be."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from k2probe.core.errors import K2ProbeError, UsageError

MAX_INPUT_BYTES = 256 * 1024 * 1024  # more than any config, suite or samples file k2probe reads


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_text(path: Path | str, what: str, *, limit: int = MAX_INPUT_BYTES,
              error: type[K2ProbeError] = UsageError) -> str:
    """The whole of the regular file `path` (what it is for: `what`) as UTF-8; anything else is one line naming it."""
    fail = error
    try:  # O_NONBLOCK: opening a FIFO returns at once, so it can be refused instead of waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise fail(f"cannot read {what} {path}: {exc.strerror or exc}", fix="check the path and its permissions") \
            from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise fail(f"{what} {path} is {_kind(mode)}, not a file", fix="give the path of a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise fail(f"{what} {path} is larger than {limit // (1024 * 1024)} MiB", fix="give a smaller file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"{what} {path} is not UTF-8 text (byte {exc.start})", fix="save it as UTF-8") from None


def require_file(path: Path | str, what: str) -> None:
    """Refuse, before any work, an input that is missing or is not a regular file (said in one line)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"{what} {path} is not a readable file: {exc.strerror or exc}",
                         fix="check the path and its permissions") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{what} {path} is not a readable file: it is {_kind(mode)}",
                         fix="give the path of a regular file")


def check_output(path: Path | str, option: str) -> None:
    """An output k2probe will write: its folder exists, and the path is a regular file or nothing yet (writing to a
    FIFO would wait for a reader, to a device would write somewhere else)."""
    target = Path(path)
    if not target.parent.is_dir():
        raise UsageError(f"{option} {target}: the folder {target.parent} does not exist", fix="create it first")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"{option} {target}: {exc.strerror or exc}", fix="check the path and its permissions") \
            from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{option} {target} is {_kind(mode)}", fix="give the path of a file to write")
