"""Who is still alive: a process is named by its pid *and* its start time (pids are reused), so a run or a workspace
whose owner died — `kill -9`, a power cut — is told apart from one still being worked on."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

OWNER_FILE = ".k2probe-owner"
LEFTOVER_PATTERNS = ("k2probe-ws-*", "k2probe-run-*", "k2probe-preflight-*", "k2probe-out-*", "k2probe-programs-*")


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22: start time in clock ticks since boot


def token(pid: int | None = None) -> str:
    """This process (or `pid`), as host:pid:start-time."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def alive(owner: str) -> bool:
    """Is the process named by a token still running? Another host's process is assumed alive (we cannot see it)."""
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    current = _start_time(pid)
    return current is not None and (started in ("?", current))


def mark_owner(folder: Path) -> None:
    """Say which process owns a temporary folder, so a later start can remove it if that process died."""
    (folder / OWNER_FILE).write_text(token(), encoding="utf-8")


def remove_leftovers() -> int:
    """Remove k2probe's temporary folders whose owner died; returns how many went."""
    removed = 0
    for pattern in LEFTOVER_PATTERNS:
        for folder in Path(tempfile.gettempdir()).glob(pattern):
            marker = folder / OWNER_FILE
            try:
                owner = marker.read_text(encoding="utf-8")
            except OSError:
                continue  # not ours to judge (no marker: an older k2probe, or someone else's)
            if not alive(owner):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed
