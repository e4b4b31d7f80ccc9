"""`k2probe bench`: a sweep of load steps against one route — closed loop over concurrencies or open loop over rates —
each step's requests split across worker processes and their histograms merged exactly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import orjson

from k2probe.core.sanitize import sanitise
from k2probe.load.step import StepPlan, StepResult, run_in_worker, run_step

_TEXT = ("Review the pull request for correctness, error handling and tests. The function parses rows of a CSV "
         "export, converts amounts to integer cents, skips blank lines and reports malformed input with its line "
         "number. Explain each problem you find and propose a minimal patch.")
CORPUS = _TEXT.split(" ")


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


def payload(plan: BenchPlan, profile: Any) -> bytes:
    body = sanitise({"model": plan.model, "messages": [{"role": "user", "content": prompt_of(plan.prompt_tokens)}],
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


def run_bench(plan: BenchPlan, profile: Any, on_step: Callable[[dict[str, Any]], None] | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, StepResult]]:
    """Every step of the sweep, in order; returns the summaries and the merged results (histograms included)."""
    body = payload(plan, profile)
    slo_us = {k: int(v * 1000) for k, v in plan.slo_ms.items()}
    steps: list[dict[str, Any]] = [{"concurrency": c} for c in plan.concurrencies] + [{"rate": r} for r in plan.rates]
    summaries: list[dict[str, Any]] = []
    merged: dict[str, StepResult] = {}
    pool = ProcessPoolExecutor(max_workers=plan.workers) if plan.workers > 1 else None
    try:
        for index, step in enumerate(steps):
            concurrency = int(step["concurrency"]) if "concurrency" in step else None
            rate = float(step["rate"]) if "rate" in step else None
            base = StepPlan(plan.base_url, plan.key, body, plan.stream, concurrency, rate,
                            plan.requests, plan.duration_s, slo_us, seed=index, headers=plan.headers)
            result = StepResult()
            if pool is None:
                result.merge(asyncio.run(run_step(base)).encoded())
            else:
                # never more workers than requests in flight: each worker gets a share of the users (or the rate)
                # and the same share of the requests
                used = min(plan.workers, base.concurrency) if base.concurrency else plan.workers
                parts = []
                for w in range(used):
                    share = replace(base, seed=index * 1000 + w, requests=_split(plan.requests, used, w),
                                    concurrency=_split(base.concurrency, used, w) if base.concurrency else None,
                                    rate=base.rate / used if base.rate else None)
                    if share.requests == 0:
                        continue
                    parts.append(pool.submit(run_in_worker, share))
                for part in parts:
                    result.merge(part.result())
            row = summary(step, result)
            summaries.append(row)
            merged[str(index)] = result
            if on_step is not None:
                on_step(row)
    finally:
        if pool is not None:
            pool.shutdown()
    return summaries, merged


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def print_steps(steps: list[dict[str, Any]], stream: bool, emulated: bool) -> None:
    """The sweep as a table: one row per step, percentiles with their n."""
    from rich.table import Table

    from k2probe.report import terminal as render

    table = Table(title="k2probe bench" + (" — built-in emulator: the pipeline, not a model" if emulated else ""))
    for column in ("step", "ok / sent", "failed", "req/s", "tok/s", "TTFT p50/p99 ms" if stream else "latency p50/p99 ms",
                   "ITL p50 ms", "e2e p99 ms", "goodput", "n"):
        table.add_column(column)
    for s in steps:
        first = s["ttft_ms"] if stream else s["e2e_ms"]
        share = s["goodput"]["share"]
        table.add_row(f"c={s['concurrency']}" if "concurrency" in s else f"{s['rate']:g}/s", f"{s['ok']}/{s['requests']}",
                      ", ".join(f"{k} {v}" for k, v in s["failed"].items()) or "–", f"{s['rps']:.1f}",
                      f"{s['output_tps']:.0f}", f"{first['p50'] or 0:.1f} / {first['p99'] or 0:.1f}",
                      f"{s['itl_ms']['p50'] or 0:.1f}", f"{s['e2e_ms']['p99'] or 0:.1f}",
                      "–" if share is None else f"{100 * share:.0f}%", str(first["n"]))
    render.out.print(table)
    for s in steps:
        merged = s.get("ttft_merged")
        if merged and merged > 0.1:
            label = f"c={s['concurrency']}" if "concurrency" in s else f"{s['rate']:g}/s"
            render.err.print(f"[yellow]{label}: {100 * merged:.0f}% of first tokens were read over a ms after they "
                             "arrived, together with later tokens; the kernel stamps a read by its last bytes, so "
                             "where the server sent them apart those TTFTs read late by up to the gap. Use more "
                             "--workers, or fewer streams per step.[/]")
