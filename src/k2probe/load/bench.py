"""`k2probe bench`: a sweep of load steps against one route — closed loop over concurrencies or open loop over rates —
each step's requests split across worker processes and their histograms merged exactly."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from queue import Empty
from typing import TYPE_CHECKING, Any

import orjson

from k2probe.core.errors import ConfigError, ProbeFailed
from k2probe.core.failures import CONFIGURATION, fix_for
from k2probe.core.records import CallRecord
from k2probe.core.sanitize import sanitise
from k2probe.load.step import Report, StepPlan, StepResult, attach, run_in_worker, run_step

if TYPE_CHECKING:
    from k2probe.load.live import Progress

_TEXT = ("Review the pull request for correctness, error handling and tests. The function parses rows of a CSV "
         "export, converts amounts to integer cents, skips blank lines and reports malformed input with its line "
         "number. Explain each problem you find and propose a minimal patch.")
CORPUS = _TEXT.split(" ")


NONCE = "request " + "0" * 24 + ": "  # each request's own number is written over the zeros (load/step.py)


def prompt_of(tokens: int) -> str:
    """About `tokens` tokens of text (≈ 0.75 words a token) from a fixed corpus: the same prompt every run."""
    words = max(1, int(tokens * 0.75))
    return " ".join(CORPUS[i % len(CORPUS)] for i in range(words))


@dataclass
class BenchPlan:
    base_url: str
    key: str
    model: str
    headers: dict[str, str]
    stream: bool
    prompt_tokens: int
    max_tokens: int
    concurrencies: list[int]
    rates: list[float]
    requests: int | None
    duration_s: float | None
    slo_ms: dict[str, float]
    workers: int
    record_calls: bool = False
    unique_prompts: bool = True  # a real server answers a repeated prompt from its cache: each request its own


@dataclass
class BenchOutcome:
    """A finished sweep: the route, the bench run that keeps it, and each step's figures (`summary` below)."""

    route: str
    run_id: str
    emulated: bool
    stream: bool
    steps: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"route": self.route, "run_id": self.run_id, "emulated": self.emulated, "steps": self.steps}


def payload(plan: BenchPlan, profile: Any) -> bytes:
    text = (NONCE if plan.unique_prompts else "") + prompt_of(plan.prompt_tokens)
    body = sanitise({"model": plan.model, "messages": [{"role": "user", "content": text}],
                     "max_tokens": plan.max_tokens, "stream": plan.stream}, profile).body
    return orjson.dumps(body)


def _split(total: int | None, parts: int, index: int) -> int | None:
    if total is None:
        return None
    return total // parts + (1 if index < total % parts else 0)


def _ms(histogram: Any) -> dict[str, Any]:
    n = histogram.get_total_count()
    if not n:
        return {"p50": None, "p90": None, "p95": None, "p99": None, "max": None, "n": 0}
    return {**{f"p{p}": histogram.get_value_at_percentile(p) / 1000.0 for p in (50, 90, 95, 99)},
            "max": histogram.get_max_value() / 1000.0, "n": n}


def summary(step: dict[str, Any], result: StepResult) -> dict[str, Any]:
    wall = result.wall_s or 1e-9
    h = result.histograms
    return {**step, "requests": result.sent, "ok": result.ok, "failed": dict(result.failed),
            "rps": result.ok / wall, "output_tps": result.output_tokens / wall,
            "ttft_ms": _ms(h["ttft"]), "ttfc_ms": _ms(h["ttfc"]), "itl_ms": _ms(h["itl"]),
            "tpot_ms": _ms(h["tpot"]), "e2e_ms": _ms(h["e2e"]), "sender_lag_ms": _ms(h["lag"]),
            "ttft_error_ms": _ms(h["ttft_error"]),  # |ours − the server's stamped TTFT|, where the server stamps it
            # share of answered streams whose first token was read late together with a later one (the client fell
            # behind): the kernel stamps a read by its last bytes, so their TTFT is the later token's arrival
            "ttft_merged": result.merged / h["ttft"].get_total_count() if h["ttft"].get_total_count() else None,
            "goodput": {"share": result.good / result.sent if result.sent else None, "rps": result.good / wall},
            "wall_s": result.wall_s}


def step_label(step: dict[str, Any]) -> str:
    return f"c={step['concurrency']}" if "concurrency" in step else f"{step['rate']:g}/s"


def run_bench(plan: BenchPlan, profile: Any, on_step: Callable[[dict[str, Any]], None] | None = None,
              progress: Progress | None = None) -> tuple[list[dict[str, Any]], dict[str, StepResult]]:
    """Every step of the sweep, in order; returns the summaries and the merged results (histograms included).
    `progress` receives the workers' snapshots as the step runs (and every call, with `record_calls`)."""
    body = payload(plan, profile)
    slo_us = {k: int(v * 1000) for k, v in plan.slo_ms.items()}
    steps: list[dict[str, Any]] = [{"concurrency": c} for c in plan.concurrencies] + [{"rate": r} for r in plan.rates]
    summaries: list[dict[str, Any]] = []
    merged: dict[str, StepResult] = {}
    queue: Any = None
    pool = None
    if plan.workers > 1:
        # fork where it is safe and quick (Linux: the workers touch none of the parent's threads' state); spawn on
        # macOS and Windows
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        queue = context.Queue()
        pool = ProcessPoolExecutor(max_workers=plan.workers, mp_context=context, initializer=attach,
                                   initargs=(queue,))
    report = progress.update if progress is not None else None
    try:
        for index, step in enumerate(steps):
            if progress is not None:
                progress.begin(step_label(step))
            concurrency = int(step["concurrency"]) if "concurrency" in step else None
            rate = float(step["rate"]) if "rate" in step else None
            base = StepPlan(plan.base_url, plan.key, body, plan.stream, concurrency, rate,
                            plan.requests, plan.duration_s, slo_us, seed=index, headers=plan.headers,
                            record_calls=plan.record_calls, label=step_label(step), unique=plan.unique_prompts)
            result = StepResult()
            if pool is None:
                result.merge(asyncio.run(run_step(base, report)).encoded())
            else:
                # never more workers than requests in flight: each worker gets a share of the users (or the rate)
                # and the same share of the requests
                used = min(plan.workers, base.concurrency) if base.concurrency else plan.workers
                parts = []
                for w in range(used):
                    share = replace(base, seed=index * 1000 + w, requests=_split(plan.requests, used, w),
                                    concurrency=_split(base.concurrency, used, w) if base.concurrency else None,
                                    rate=base.rate / used if base.rate else None, worker=w)
                    if share.requests == 0:
                        continue
                    parts.append(pool.submit(run_in_worker, share))
                for encoded in _gather(parts, queue, report):
                    result.merge(encoded)
            row = summary(step, result)
            summaries.append(row)
            merged[str(index)] = result
            if on_step is not None:
                on_step(row)
    finally:
        if pool is not None:
            pool.shutdown()
    return summaries, merged


def _gather(parts: list[Future[dict[str, Any]]], queue: Any, report: Report | None) -> list[dict[str, Any]]:
    """Wait for the workers, passing their snapshots on as they come; then every snapshot each worker says it sent
    (its last one carries the last recorded calls), so none is lost to the race between the two channels."""
    received: Counter[int] = Counter()

    def drain(timeout: float) -> None:
        try:
            snapshot = queue.get(timeout=timeout)
        except Empty:
            return
        received[snapshot["worker"]] += 1
        if report is not None:
            report(snapshot)

    while not all(part.done() for part in parts):
        drain(0.1)
    results = [part.result() for part in parts]
    expected = {r["worker"]: r["reports"] for r in results}
    deadline = time.monotonic() + 30
    while any(received[w] < n for w, n in expected.items()) and time.monotonic() < deadline:
        drain(0.5)
    return results


def bench_call(route: str, model: str, stream: bool, request: dict[str, Any], label: str,
               call: dict[str, Any]) -> CallRecord:
    """A request of the load test as the store keeps any call (`--record-calls`)."""

    def ms(us: int | None) -> float | None:
        return None if us is None else us / 1000.0

    return CallRecord(route=route, model=model, endpoint="/chat/completions", stream=stream, request=request,
                      purpose=f"bench {label}", status=call["status"], error_type=None if call["ok"] else call["cause"],
                      ttft_ms=ms(call["ttft_us"]), ttfc_ms=ms(call["ttfc_us"]), latency_ms=ms(call["e2e_us"]),
                      itl_ms=[gap / 1000.0 for gap in call["itl_us"]], completion_tokens=call["out"],
                      started_at=call["at"])


def verdict(steps: list[dict[str, Any]], route: Any) -> None:
    """A sweep where not one request succeeded is not a measurement: the configuration's fault (exit 2, with the
    fix) when every failure says so, else the route's (exit 1). Partial failures are figures, not a verdict."""
    if not steps or any(step["ok"] for step in steps):
        return
    failed: Counter[str] = Counter()
    for step in steps:
        failed.update(step["failed"])
    kinds = ", ".join(f"{kind} {count}" for kind, count in failed.most_common())
    if len(failed) == 1 and (cause := next(iter(failed))) in CONFIGURATION:  # one rule: core/failures.py
        raise ConfigError(f"route {route.name!r}: every request failed ({kinds})",
                          fix=fix_for(cause, route.base_url, key_env=route.api_key_env or "AI_GATEWAY_API_KEY"))
    raise ProbeFailed(f"route {route.name!r}: not one request succeeded ({kinds})",
                      fix="see `k2probe doctor` for what the route answers")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))
