"""`k2probe bench --concurrency auto`: the saturation sweep raises the load until goodput stops rising or failures
or latency break, and reports the knee — on the emulator with a rate limit, and by its rule on constructed steps."""

from __future__ import annotations

import math
from typing import Any

from k2probe.load.sweep import RULE, Sweep

from .conftest import route_env


def test_auto_finds_a_knee_within_what_the_rate_limit_allows(cli, emulator, workdir):
    rpm = 60
    server = emulator(rpm=rpm, ttft_ms=20)
    page = workdir / "sweep.html"
    done = cli("bench", "--concurrency", "auto", "--requests", "8", "--workers", "1", "--warmup", "0", "--json",
               "--html", str(page), env=route_env(server), timeout=600)
    assert done.code == 0, done.stderr[-2000:]
    data = done.json()
    steps, sweep = data["steps"], data["sweep"]
    levels = [s["concurrency"] for s in steps]
    assert levels == [2 ** i for i in range(len(levels))]  # 1, 2, 4, … doubling
    assert levels[-1] < RULE.limit  # the rate limit stopped it long before the rule's ceiling
    assert all(s["requests"] >= max(8, RULE.requests_per_user * s["concurrency"]) for s in steps)
    knee = sweep["knee"]
    assert knee is not None and knee["concurrency"] in levels[:-1]  # a step past the knee was seen
    [at] = [s for s in steps if s["concurrency"] == knee["concurrency"]]
    assert knee["goodput_rps"] == at["goodput"]["rps"] and knee["p50_ms"] == at["ttft_ms"]["p50"]
    assert knee["p50_ms"] <= knee["p99_ms"] and knee["metric"] == "ttft"
    # what the limit allows: rpm answers a minute (the route check took one of them)
    minutes = math.ceil(sum(s["wall_s"] for s in steps) / 60)
    assert sum(s["ok"] for s in steps) <= rpm * minutes and at["ok"] <= rpm
    # stopped by the limit's 429s — or, on a machine busy enough, by a stall or a latency spike first: a knee either way
    assert any(words in sweep["stopped"] for words in ("requests failed", "rose less than", "first step's"))
    assert sum(s["failed"].get("rate_limited", 0) for s in steps) > 0 or "requests failed" not in sweep["stopped"]
    assert sweep["stopped"].startswith(f"stopped at c={levels[-1]}:")
    assert data["settings"]["concurrency"] == "auto" and sweep["rule"]["factor"] == RULE.factor
    html = page.read_text()
    assert f"knee at concurrency {knee['concurrency']}" in html and "saturation sweep: concurrency 1, 2, 4" in html
    assert f"concurrency {knee['concurrency']} (the knee)" in html and "goodput/s" in html
    shown = cli("bench", "--concurrency", "auto", "--requests", "8", "--warmup", "0", "--workers", "1",
                env=route_env(emulator(rpm=rpm, ttft_ms=20)), timeout=600)  # on the terminal: the row and the line
    assert shown.code == 0, shown.stderr[-2000:]
    assert "◀ knee" in shown.stdout and "knee at concurrency" in shown.stdout and "stopped at c=" in shown.stdout


def test_auto_and_rate_together_are_a_usage_error(cli):
    result = cli("bench", "--concurrency", "auto", "--rate", "5")
    assert result.code == 2 and "--concurrency auto sweeps the concurrency" in result.stderr


def _step(concurrency: int, goodput: float, failed: int = 0, p99: float = 50.0, sent: int = 100) -> dict[str, Any]:
    figures = {"p50": p99 / 2, "p99": p99}
    return {"concurrency": concurrency, "requests": sent, "ok": sent - failed, "failed": {"rate_limited": failed}
            if failed else {}, "rps": goodput, "output_tps": goodput * 10, "goodput": {"rps": goodput},
            "ttft_ms": figures, "e2e_ms": figures}


def _run(goodputs: list[tuple[float, int, float]]) -> tuple[list[int], Sweep]:
    """Feed the sweep steps of the given (goodput, failed, p99) until it stops; the concurrencies it asked for."""
    sweep, done = Sweep(RULE, stream=True), []
    while (c := sweep.next_concurrency(done)) is not None:
        goodput, failed, p99 = goodputs[len(done)]
        done.append(_step(c, goodput, failed, p99))
    return [s["concurrency"] for s in done], sweep


def test_the_knee_rule_stops_at_a_stall_a_failure_share_or_a_latency_blow_up():
    levels, sweep = _run([(10, 0, 50), (19, 0, 50), (36, 0, 60), (38, 0, 90), (39, 0, 90)])
    assert levels == [1, 2, 4, 8] and "rose less than 10%" in sweep.stopped  # 38 < 36 × 1.1: stalled
    assert sweep.knee([_step(c, g) for c, g in zip(levels, (10, 19, 36, 38), strict=True)])["concurrency"] == 8
    levels, sweep = _run([(10, 0, 50), (19, 0, 50), (36, 6, 60), (70, 0, 60)])
    assert levels == [1, 2, 4] and "6% of its requests failed" in sweep.stopped
    steps = [_step(1, 10), _step(2, 19), _step(4, 36, failed=6)]
    assert sweep.knee(steps)["concurrency"] == 2  # a broken step is never the knee
    levels, sweep = _run([(10, 0, 50), (19, 0, 50), (36, 0, 201)])
    assert levels == [1, 2, 4] and "over 4× the first step's" in sweep.stopped
    levels, sweep = _run([(10, 100, 50)])
    assert levels == [1] and sweep.knee([_step(1, 0, failed=100)]) is None
