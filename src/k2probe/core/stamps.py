"""Receive stamps from the kernel: SO_TIMESTAMPNS makes each socket read carry when its bytes reached the machine,
which is the truth both sides of a timing need — the client for TTFT, the emulator for a request's arrival — however
late a busy event loop gets round to the read."""

from __future__ import annotations

import platform
import socket
import struct
import sys
import time
from collections.abc import Callable

STAMP_HEADER = "x-k2probe-stamp"  # a request header asking k2probe's emulator for its own TTFT ("1")
SERVER_TTFT = ": k2probe-server ttft_us="  # the SSE comment it answers with, before [DONE]: microseconds

SO_TIMESTAMPNS = 35  # Linux (asm-generic): stamps as struct timespec on CLOCK_REALTIME
ANCILLARY = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
# the option's number (35) is asm-generic's, which x86-64 and arm64 use; elsewhere (sparc, parisc…) reads go unstamped
AVAILABLE = (sys.platform.startswith("linux") and ANCILLARY > 0 and platform.machine() in ("x86_64", "aarch64")
             and struct.calcsize("P") == 8)


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp this socket's reads; False where it cannot (then reads are stamped on return)."""
    if not AVAILABLE:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


_OFFSET_S = 0.05  # how long one reading of realtime − clock serves (a slew of 500 ppm moves it 25 µs in that time)
_offsets: dict[Callable[[], float], tuple[float, float]] = {}  # clock → (realtime − clock, read again after)


def _offset(clock: Callable[[], float]) -> tuple[float, float]:
    """realtime − `clock`, read with the two clocks back to back (again, if this process was preempted between
    them) and kept for _OFFSET_S; and now on `clock`."""
    now = clock()
    known = _offsets.get(clock)
    if known is not None and now < known[1]:
        return known[0], now
    for _ in range(3):
        before = clock()
        wall = time.time()
        after = clock()
        if after - before < 50e-6:
            break
    offset = wall - (before + after) / 2
    _offsets[clock] = (offset, after + _OFFSET_S)
    return offset, after


def received(ancillary: list[tuple[int, int, bytes]], clock: Callable[[], float]) -> float:
    """When the last bytes of a read reached the kernel, on `clock` (time.perf_counter or time.monotonic), or now on
    it where the read carries no stamp. The realtime stamp is converted by the clocks' offset (read back to back, a
    fresh reading every 50 ms), so neither a slew nor a preemption shifts it; a stamp from the future or over a minute
    old (the wall clock was stepped) is clamped."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            offset, now = _offset(clock)
            age = now + offset - (float(sec) + float(nsec) / 1e9)
            return now - min(max(age, 0.0), 60.0)
    return clock()
