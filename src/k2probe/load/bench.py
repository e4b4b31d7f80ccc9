"""`k2probe bench`: a sweep of load steps against one route — closed loop over concurrencies or open loop over rates —
each step's requests split across worker processes and their histograms merged exactly."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from queue import Empty
from typing import TYPE_CHECKING, Any

import orjson

from k2probe.core.errors import ConfigError, ProbeFailed
from k2probe.core.failures import CONFIGURATION, fix_for
from k2probe.core.records import CallRecord
from k2probe.core.sanitize import sanitise
from k2probe.load.shapes import POOL, POOL_BYTES, Lengths, Messages, numbered
from k2probe.load.step import Report, StepPlan, StepResult, attach, run_in_worker, run_step
from k2probe.load.sweep import RULE, Sweep

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
    prompt_tokens: Lengths
    max_tokens: Lengths
    concurrencies: list[int]
    rates: list[float]
    requests: int | None
    duration_s: float | None
    slo_ms: dict[str, float]
    workers: int
    record_calls: bool = False
    unique_prompts: bool = True  # a real server answers a repeated prompt from its cache: each request its own
    dataset: list[Messages] | None = None  # prompts to cycle through (else the synthetic corpus, prompt_tokens long)
    dataset_name: str | None = None  # the file they came from, for the record
    seed: int = 0  # the lengths drawn (and the open loop's arrivals): the same seed, the same requests
    warmup: int = 0  # requests sent before the first step, not measured
    auto: bool = False  # --concurrency auto: a saturation sweep by sweep.RULE
    executor: str = "local"  # ray: the workers on a Ray cluster's nodes (load/ray_workers.py), `workers` per node
    ray_address: str | None = None
    key_env: str | None = None  # the variable each Ray node reads the key from (None: the built-in emulator's key)

    def settings(self) -> dict[str, Any]:
        """What the sweep sent and judged by, as kept in the run, shown on the page and in --json."""
        return {"stream": self.stream, "prompt_tokens": None if self.dataset else self.prompt_tokens.as_json(),
                "max_tokens": self.max_tokens.as_json(), "dataset": self.dataset_name,
                "dataset_prompts": len(self.dataset) if self.dataset else None, "unique_prompts": self.unique_prompts,
                "seed": self.seed, "requests": self.requests, "duration_s": self.duration_s,
                "workers": self.workers, "slo_ms": self.slo_ms, "warmup": self.warmup,
                "concurrency": "auto" if self.auto else self.concurrencies, "rates": self.rates,
                "executor": self.executor}


@dataclass
class BenchOutcome:
    """A finished sweep: the route, the bench run that keeps it, and each step's figures (`summary` below)."""

    route: str
    run_id: str
    emulated: bool
    stream: bool
    steps: list[dict[str, Any]]
    settings: dict[str, Any]
    warmup: dict[str, Any] | None = None  # what the unmeasured warm-up requests met
    sweep: dict[str, Any] | None = None  # --concurrency auto: its rule, the knee and why it stopped
    cluster: dict[str, Any] | None = None  # --executor ray: the nodes used (workers, cores) and those left out

    def as_json(self) -> dict[str, Any]:
        return {"route": self.route, "run_id": self.run_id, "emulated": self.emulated, "settings": self.settings,
                "warmup": self.warmup, "steps": self.steps, "sweep": self.sweep, "cluster": self.cluster}


def _body(plan: BenchPlan, messages: Messages, max_tokens: int, profile: Any) -> bytes:
    body = sanitise({"model": plan.model, "messages": messages, "max_tokens": max_tokens, "stream": plan.stream},
                    profile).body
    return orjson.dumps(body)


def payloads(plan: BenchPlan, profile: Any) -> list[bytes]:
    """The bodies a step cycles through: one per dataset prompt, or per draw of the lengths (up to POOL of them, or
    POOL_BYTES), each with the zeros a worker numbers the request by unless --same-prompt. Drawn from the seed."""
    rng = random.Random(plan.seed)
    nonce = NONCE if plan.unique_prompts else ""
    varies = not (plan.prompt_tokens.fixed or plan.dataset) or not plan.max_tokens.fixed
    count = max(len(plan.dataset or [None]), POOL if varies else 1)
    bodies: list[bytes] = []
    size = 0
    for index in range(count):
        if plan.dataset:
            messages = numbered(plan.dataset[index % len(plan.dataset)], nonce)
        else:
            messages = [{"role": "user", "content": nonce + prompt_of(plan.prompt_tokens.draw(rng))}]
        bodies.append(_body(plan, messages, plan.max_tokens.draw(rng), profile))
        size += len(bodies[-1])
        if size > POOL_BYTES and index >= (len(plan.dataset) - 1 if plan.dataset else 0):
            break
    return bodies


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


@dataclass
class Measured:
    """A sweep's figures: each step's summary and merged result, the warm-up's counts, the saturation sweep's verdict."""

    steps: list[dict[str, Any]]
    results: dict[str, StepResult]
    warmup: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None
    cluster: dict[str, Any] | None = None


def step_requests(plan: BenchPlan, concurrency: int | None) -> int | None:
    """Requests of one step: --requests (or until --duration); a saturation step at least RULE.requests_per_user
    per user in flight, so each user sends more than once."""
    if plan.requests is None or not plan.auto or concurrency is None:
        return plan.requests
    return max(plan.requests, RULE.requests_per_user * concurrency)


def _steps(plan: BenchPlan, sweep: Sweep | None, done: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The steps in order: the given concurrencies then rates, or the saturation sweep's, decided step by step."""
    if sweep is None:
        yield from ([{"concurrency": c} for c in plan.concurrencies] + [{"rate": r} for r in plan.rates])
        return
    while (concurrency := sweep.next_concurrency(done)) is not None:
        yield {"concurrency": concurrency}


def shares(base: StepPlan, requests: int | None, workers: int) -> list[StepPlan]:
    """A step split over `workers`, never more than requests in flight: each worker gets a share of the users (or the
    rate) and the same share of the requests; worker w sends bodies w, w + used, w + 2·used, …"""
    used = min(workers, base.concurrency) if base.concurrency else workers
    parts = []
    for w in range(used):
        share = replace(base, seed=base.seed * 1000 + w, requests=_split(requests, used, w),
                        concurrency=_split(base.concurrency, used, w) if base.concurrency else None,
                        rate=base.rate / used if base.rate else None, worker=w, offset=w, stride=used)
        if share.requests != 0:
            parts.append(share)
    return parts


def run_bench(plan: BenchPlan, bodies: list[bytes], on_step: Callable[[dict[str, Any]], None] | None = None,
              progress: Progress | None = None) -> Measured:
    """The warm-up (unmeasured), then every step of the sweep in order, each cycling through `bodies` (`payloads`).
    `progress` receives the workers' snapshots as the step runs (and every call, with `record_calls`)."""
    slo_us = {k: int(v * 1000) for k, v in plan.slo_ms.items()}
    sweep = Sweep(RULE, plan.stream) if plan.auto else None
    measured = Measured([], {})
    cluster = None
    if plan.executor == "ray":  # Ray imported only here; its nodes probed before any request is sent
        from k2probe.load.ray_workers import RayLoad

        cluster = RayLoad(plan.ray_address, plan.base_url, plan.key_env, plan.headers, bodies, plan.workers)
        measured.cluster = cluster.describe()
    if plan.warmup:
        first = plan.concurrencies[0] if plan.concurrencies else 8
        warm = StepPlan(plan.base_url, plan.key, bodies, plan.stream, min(plan.warmup, first, 64), None,
                        plan.warmup, None, slo_us, seed=-1, headers=plan.headers, label="warm-up",
                        unique=plan.unique_prompts)
        done = asyncio.run(run_step(warm))
        measured.warmup = {"requests": done.sent, "ok": done.ok, "failed": dict(done.failed),
                           "concurrency": warm.concurrency}
    queue: Any = None
    pool = None
    if plan.workers > 1 and cluster is None:
        # fork where it is safe and quick (Linux: the workers touch none of the parent's threads' state); spawn on
        # macOS and Windows
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        queue = context.Queue()
        pool = ProcessPoolExecutor(max_workers=plan.workers, mp_context=context, initializer=attach,
                                   initargs=(queue,))
    report = progress.update if progress is not None else None
    try:
        for index, step in enumerate(_steps(plan, sweep, measured.steps)):
            if progress is not None:
                progress.begin(step_label(step))
            concurrency = int(step["concurrency"]) if "concurrency" in step else None
            rate = float(step["rate"]) if "rate" in step else None
            requests = step_requests(plan, concurrency)
            base = StepPlan(plan.base_url, plan.key, bodies, plan.stream, concurrency, rate,
                            requests, plan.duration_s, slo_us, seed=plan.seed * 1_000_003 + index,
                            headers=plan.headers, record_calls=plan.record_calls, label=step_label(step),
                            unique=plan.unique_prompts)
            result = StepResult()
            nodes = None
            if cluster is not None:
                result, nodes = cluster.step(shares(replace(base, key=""), requests, len(cluster.workers)), report)
            elif pool is None:
                result.merge(asyncio.run(run_step(base, report)).encoded())
            else:
                parts = [pool.submit(run_in_worker, share) for share in shares(base, requests, plan.workers)]
                for encoded in _gather(parts, queue, report):
                    result.merge(encoded)
            row = summary(step, result)
            # --executor ray: each node's own figures, beside the merge they add up to (else null: one machine)
            row["nodes"] = nodes
            row["saturated_nodes"] = [n["node"] for n in nodes if n["saturated"]] if nodes is not None else None
            measured.steps.append(row)
            measured.results[str(index)] = result
            if on_step is not None:
                on_step(row)
    finally:
        if pool is not None:
            pool.shutdown()
        if cluster is not None:
            cluster.close()
    if sweep is not None:
        measured.sweep = sweep.as_json(measured.steps)
    return measured


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


def bench_call(route: str, model: str, stream: bool, bodies: list[bytes], label: str,
               call: dict[str, Any]) -> CallRecord:
    """A request of the load test as the store keeps any call (`--record-calls`): the body it sent (its number's
    zeros as the payload holds them)."""
    request = orjson.loads(bodies[call.get("body", 0)])

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
