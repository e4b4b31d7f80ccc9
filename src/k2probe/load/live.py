"""The running step as the workers last reported it: merged counts and percentiles for the live view (rendered in
report/bench.py), and the calls they send when `--record-calls` asks for every request in the store."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hdrh.histogram import HdrHistogram

from k2probe.load.step import histogram

OnCalls = Callable[[str, list[dict[str, Any]]], None]  # (the step's label, its calls)


class Progress:
    """Workers' latest snapshots of the current step, merged by `figures` (report/bench.py's LiveStep shows them
    from rich's refresh thread)."""

    def __init__(self, stream: bool, on_calls: OnCalls | None = None) -> None:
        self.stream = stream
        self.on_calls = on_calls
        self.label = ""
        self.started = time.monotonic()
        self.latest: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def begin(self, label: str) -> None:
        with self.lock:
            self.label, self.started = label, time.monotonic()
            self.latest.clear()

    def update(self, snapshot: dict[str, Any]) -> None:
        calls = snapshot.pop("calls", None)
        if calls and self.on_calls is not None:
            self.on_calls(snapshot["label"], calls)
        with self.lock:
            if snapshot["label"] == self.label:  # a straggler from the step before is recorded, not shown
                self.latest[snapshot["worker"]] = snapshot

    def figures(self) -> dict[str, Any]:
        """Sent, ok, failed by kind, requests/s and the first-byte percentiles (TTFT, or latency unstreamed)."""
        with self.lock:
            snapshots = list(self.latest.values())
            elapsed = time.monotonic() - self.started
        merged: HdrHistogram = histogram()
        failed: Counter[str] = Counter()
        for snap in snapshots:
            merged.decode_and_add(base64.b64decode(snap["first"]))
            failed.update(snap["failed"])
        n = merged.get_total_count()
        ok = sum(s["ok"] for s in snapshots)
        return {"label": self.label, "elapsed_s": elapsed, "sent": sum(s["sent"] for s in snapshots), "ok": ok,
                "failed": dict(failed), "rps": ok / elapsed if elapsed > 0 else 0.0, "n": n,
                "p50": merged.get_value_at_percentile(50) / 1000 if n else None,
                "p99": merged.get_value_at_percentile(99) / 1000 if n else None}
