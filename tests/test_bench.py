"""`k2probe bench`: closed and open loops against the emulator, histograms merged across worker processes."""

from __future__ import annotations

from .conftest import route_env

KEYS = ("requests", "ok", "failed", "rps", "output_tps", "ttft_ms", "ttfc_ms", "itl_ms", "tpot_ms", "e2e_ms", "goodput")


def test_closed_loop_sweep_measures_the_injected_ttft(cli, emulator):
    server = emulator(ttft_ms=30, itl_ms=2)
    result = cli("bench", "--concurrency", "2,4", "--requests", "40", "--workers", "2", "--json", env=route_env(server),
                 timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    assert [s["concurrency"] for s in data["steps"]] == [2, 4]
    for step in data["steps"]:
        assert all(key in step for key in KEYS)
        assert step["requests"] == step["ok"] == 40 and step["failed"] == {}
        ttft = step["ttft_ms"]
        assert ttft["n"] == 40 and 29 <= ttft["p50"] <= 30 + 250  # what the server was told, plus the machine
        assert ttft["p50"] <= ttft["p90"] <= ttft["p99"] <= ttft["max"]
        assert step["itl_ms"]["n"] > 40 and step["e2e_ms"]["p50"] >= ttft["p50"]
        assert step["rps"] > 0 and step["output_tps"] > 0


def test_open_loop_keeps_its_schedule_and_counts_failures_by_kind(cli, emulator):
    server = emulator(faults={"rate_limit": 0.3}, seed=3)
    result = cli("bench", "--rate", "40", "--requests", "60", "--no-stream", "--slo", "e2e_ms=1", "--json",
                 env=route_env(server), timeout=300)
    assert result.code == 0, result.stderr
    [step] = result.json()["steps"]
    assert step["rate"] == 40 and step["requests"] == 60
    assert step["failed"].get("rate_limited", 0) > 0 and step["ok"] + sum(step["failed"].values()) == 60
    assert step["sender_lag_ms"]["n"] == 60  # the sender's own lateness is measured
    assert step["goodput"]["share"] == 0  # nothing meets a 1 ms end-to-end limit
    assert step["ttft_ms"]["n"] == 0 and step["e2e_ms"]["n"] == step["ok"]  # not streamed: no TTFT


def test_bench_usage_errors_are_one_line(cli):
    for args, words in ((["bench", "--concurrency", "0"], "positive number"),
                        (["bench", "--rate", "fast"], "not a list of numbers"),
                        (["bench", "--slo", "speed=3"], "unknown limit")):
        result = cli(*args)
        assert result.code == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
