"""`k2probe bench`: closed and open loops against the emulator, histograms merged across worker processes."""

from __future__ import annotations

import pytest

from .conftest import free_port, route_env, wait_for_port

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
        # what the server was told, within what a loaded 2-core machine adds (a chunk held back by Nagle: +40 ms)
        assert ttft["n"] == 40 and 29.5 <= ttft["p50"] <= 30 + 15
        assert 1.5 <= step["itl_ms"]["p50"] <= 2 + 8
        assert ttft["p50"] <= ttft["p90"] <= ttft["p99"] <= ttft["max"]
        assert step["itl_ms"]["n"] > 40 and step["e2e_ms"]["p50"] >= ttft["p50"]
        assert step["rps"] > 0 and step["output_tps"] > 0


def test_open_loop_keeps_its_schedule_and_counts_failures_by_kind(cli, emulator):
    server = emulator(faults={"rate_limit": 0.2}, seed=3, ttft_ms=5)  # no answer can come within 1 ms
    result = cli("bench", "--rate", "40", "--requests", "60", "--no-stream", "--slo", "e2e_ms=1", "--workers", "1",
                 "--json", env=route_env(server), timeout=300)
    assert result.code == 0, result.stderr
    [step] = result.json()["steps"]
    assert step["rate"] == 40 and step["requests"] == 60
    # every 429 the emulator sent is counted as rate-limited, and no request vanished
    assert step["failed"] == {"rate_limited": server.state.plan.injected["rate_limit"]}
    assert step["ok"] + step["failed"]["rate_limited"] == 60
    assert 40 * 0.6 <= 60 / step["wall_s"] <= 40 * 1.25  # arrivals averaged the rate asked for
    assert step["sender_lag_ms"]["n"] == 60  # the sender's own lateness is measured
    assert step["goodput"]["share"] == 0  # nothing meets a 1 ms end-to-end limit
    assert step["ttft_ms"]["n"] == 0 and step["e2e_ms"]["n"] == step["ok"]  # not streamed: no TTFT


def test_bench_usage_errors_are_one_line(cli):
    for args, words in ((["bench", "--concurrency", "0"], "positive number"),
                        (["bench", "--rate", "fast"], "not a list of numbers"),
                        (["bench", "--slo", "speed=3"], "unknown limit")):
        result = cli(*args)
        assert result.code == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_emulator_stamps_its_ttft_and_serves_from_several_processes(cli, workdir):
    import os
    import subprocess
    import sys

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "K2PROBE"))}
    server = subprocess.Popen([sys.executable, "-m", "k2probe", "emulator", "--port", str(port), "--workers", "2",
                               "--ttft-ms", "50"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server, 30)
        result = cli("bench", "--concurrency", "1,8", "--requests", "40", "--max-tokens", "16", "--json",
                     env={"AI_GATEWAY_API_KEY": "sk-k2probe-emulator",
                          "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{port}/v1"}, timeout=300)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert result.code == 0, result.stderr
    for step in result.json()["steps"]:
        error = step["ttft_error_ms"]
        assert error["n"] == 40  # every stream carried the server's own stamp
        assert error["p50"] < 5  # kernel-stamped on both sides; the precise figure is bench/bench_load.py's
        assert step["ttft_ms"]["p50"] >= 49


def test_record_calls_stores_every_request_and_by_default_none(cli, emulator):
    server = emulator(ttft_ms=100)  # steps of over a second: calls travel in the half-second snapshots and the last
    env = route_env(server)
    plain = cli("bench", "--concurrency", "2", "--requests", "12", "--workers", "2", "--json", env=env, timeout=300)
    recorded = cli("bench", "--concurrency", "2,3", "--requests", "12", "--workers", "2", "--record-calls", "--json",
                   env=env, timeout=300)
    assert plain.code == 0 and recorded.code == 0, recorded.stderr
    none = cli("show", plain.json()["run_id"], "--json", "--limit", "0").json()
    assert none["calls_total"] == 0  # a summary row per step and the histograms, not a row per request
    shown = cli("show", recorded.json()["run_id"], "--json", "--limit", "100").json()
    assert shown["calls_total"] == 24  # every request of both steps, from both worker processes
    purposes = sorted(c["purpose"] for c in shown["calls"])
    assert purposes == ["bench c=2"] * 12 + ["bench c=3"] * 12
    for call in shown["calls"]:
        assert call["status"] == 200 and call["stream"] is True
        assert call["ttft_ms"] >= 99 and call["latency_ms"] >= call["ttft_ms"] and call["completion_tokens"] > 0
        assert call["request"]["messages"][0]["content"].startswith("request 000000000000000000000000: Review the pull")


def test_a_wrong_key_or_url_stops_bench_at_the_route_check_with_doctors_diagnosis(cli, emulator, workdir):
    """One cheap request proves key, base URL and model before the sweep: exit 2 after at most 2 requests, with the
    diagnosis and its fix, and no bench run on record as if the server had been measured."""
    server = emulator()
    wrong_key = cli("bench", "--concurrency", "4", "--requests", "50", "--workers", "2",
                    env=route_env(server, key="sk-wrong"), timeout=300)
    assert wrong_key.code == 2, wrong_key.stderr
    assert server.state.requests_seen <= 2  # not the 4 warm-up requests, not the 50 of the step
    line = wrong_key.stderr.strip().splitlines()[-1]
    assert "cannot be used (invalid_key): HTTP 401" in line and "check the key" in line, line
    assert "AI_GATEWAY_API_KEY" in line and "sk-wrong" not in wrong_key.stdout + wrong_key.stderr
    dead = cli("bench", "--concurrency", "1", "--requests", "3", "--workers", "1",
               env=route_env(server, base_url=f"http://127.0.0.1:{free_port()}/v1"))
    # nothing listening where the route points: k2probe could not measure anything (core/failures.CONFIGURATION)
    assert dead.code == 2 and "cannot be used (unreachable)" in dead.stderr and "is the server running" \
        in dead.stderr
    runs = cli("runs", "--json").json()["runs"]
    assert not [r for r in runs if r.get("command") == "bench"]  # stopped before any run was opened


def test_the_live_view_shows_the_running_step_on_a_terminal(workdir, emulator):
    """Under a pseudo-terminal, the step's counts and percentiles are redrawn while it runs, then the table."""
    import os
    import pty
    import subprocess
    import sys
    import time

    server = emulator(ttft_ms=20)
    primary, secondary = pty.openpty()
    env = {**os.environ, **route_env(server), "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "bench", "--concurrency", "4", "--duration", "2.5",
                                "--workers", "2"], stdin=secondary, stdout=secondary, stderr=secondary, env=env,
                               cwd=workdir, close_fds=True)
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=30) == 0, output[-2000:]
    text = output.decode("utf-8", "replace")
    frames = [frame for frame in text.split("\r") if "sent ·" in frame]
    counts = {frame.split(" sent")[0].rsplit("· ", 1)[-1] for frame in frames}
    assert len(counts) >= 3, frames[:5]  # redrawn as the step ran, with a growing count
    assert any("TTFT p50" in frame and "req/s" in frame for frame in frames)
    assert "k2probe bench" in text and "c=4" in text  # and the table at the end


@pytest.mark.parametrize("tokens", [-5, 1e12, "many", 2.5])
def test_a_usage_count_that_is_not_a_count_is_malformed_in_bench_too(cli, tokens):
    """bench's lean client reads token counts by the same rule as the request path: never a negative or huge count."""
    from .garbled import Garbled, chunk, completion

    usage = {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": 3}
    stream = [chunk({"content": "x"}), chunk({}, usage=usage, finish="stop")]
    with Garbled(completion(usage=usage), stream) as server:
        for mode in ("--stream", "--no-stream"):
            result = cli("bench", "--concurrency", "1", "--requests", "3", "--workers", "1", mode, "--json",
                         env=server.env(), timeout=120)
            assert result.code == 1, result.stderr
            assert "not one request succeeded (malformed_response 3)" in result.stderr


def test_every_request_sends_its_own_prompt_unless_asked_not_to(cli):
    """A real server answers a repeated prompt from its prompt cache (Moonshot bills cached tokens apart): by default
    each request is numbered, across workers too; `--same-prompt` sends one prompt over and over."""
    from .hostile import is_route_check
    from .untrusted_server import UntrustedGateway

    gateway = UntrustedGateway(lambda _key, _body: (["thinking"], ["an", " answer"])).start()
    try:
        env = {"AI_GATEWAY_API_KEY": "sk-bench-0000000000", "AI_GATEWAY_BASE_URL": gateway.base_url}
        done = cli("bench", "--concurrency", "2", "--requests", "8", "--workers", "2", "--json", env=env, timeout=300)
        assert done.code == 0, done.stderr[-2000:]
        prompts = [r["messages"][0]["content"] for r in gateway.requests if not is_route_check(r)]
        assert len(prompts) == 8 + 4 and len(set(prompts)) == len(prompts), prompts[:3]
        gateway.requests.clear()
        same = cli("bench", "--concurrency", "2", "--requests", "4", "--same-prompt", "--json", env=env, timeout=300)
        assert same.code == 0, same.stderr[-2000:]
        assert len({r["messages"][0]["content"] for r in gateway.requests if not is_route_check(r)}) == 1
    finally:
        gateway.stop()
