"""Misbehaviour on purpose: random faults at configured rates, an RPM window and a concurrency cap."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque

from k2probe.emulator.contract import ApiError
from k2probe.emulator.settings import EmulatorSettings

STREAM_ONLY = ("cut", "malformed")


class FaultPlan:
    """Draws, per request, at most one fault kind, deterministic for the seed and request order."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._active = 0
        self.injected: Counter[str] = Counter()  # what was injected, so a test can hold a client's count to it

    def draw(self) -> str | None:
        with self._lock:
            for kind, rate in self.settings.faults.items():
                if rate > 0 and self._rng.random() < rate:
                    self.injected[kind] += 1
                    return kind
        return None

    def error_for(self, kind: str) -> ApiError | None:
        """The HTTP error a fault kind answers with before any body is sent (None for stream faults)."""
        s = self.settings
        after = s.retry_after_s
        org = s.organization
        return {
            "rate_limit": ApiError(429, "rate_limit_reached_error",
                                   f"Your account {org} request reached organization max RPM: {s.rpm or 3}, "
                                   f"please try again after {max(1, round(after))} seconds", after),
            "overloaded": ApiError(429, "engine_overloaded_error",
                                   "The engine is currently overloaded, please try again later", after),
            "quota": ApiError(429, "exceeded_current_quota_error",
                              f"Your account {org} is suspended due to insufficient balance, "
                              "please recharge your account or check your plan and billing details"),
            "server_error": ApiError(500, "server_error", "Internal server error"),
            "unavailable": ApiError(503, "server_unavailable", "The service is temporarily unavailable"),
        }.get(kind)

    def admit(self) -> ApiError | None:
        """Apply the RPM window and the concurrency cap; on success the caller must call release()."""
        s = self.settings
        now = time.monotonic()
        with self._lock:
            while self._window and now - self._window[0] >= 60.0:
                self._window.popleft()
            if s.rpm is not None and len(self._window) >= s.rpm:
                wait = max(1, round(60.0 - (now - self._window[0])))
                return ApiError(429, "rate_limit_reached_error",
                                f"Your account {s.organization} request reached organization max RPM: {s.rpm}, "
                                f"please try again after {wait} seconds", float(wait))
            if s.max_concurrency is not None and self._active >= s.max_concurrency:
                return ApiError(429, "rate_limit_reached_error",
                                f"Your account {s.organization} request reached organization max concurrency: "
                                f"{s.max_concurrency}, please try again after 1 seconds", s.retry_after_s)
            self._window.append(now)
            self._active += 1
            return None

    def release(self) -> None:
        with self._lock:
            self._active -= 1
