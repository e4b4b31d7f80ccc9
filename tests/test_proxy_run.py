"""`k2probe proxy` as a user runs it: a process serving until Ctrl-C or SIGTERM, each call, session and finding in
the store as a `proxy` run (and on its report page), the run's metrics those of the same calls made directly, and
neither the route's key nor the client's Authorization anywhere on disk or in the output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

import k2probe
from k2probe import api
from k2probe.client.transport import Transport
from k2probe.core.records import linked
from k2probe.eval.metrics import compute
from k2probe.proxy.app import Proxy
from k2probe.proxy.recording import StoreSink
from k2probe.proxy.server import ProxyServer
from k2probe.recording.store import Store
from k2probe.report.proxy_html import write_proxy_report

from .conftest import free_port, route_env, wait_for_port

ROUTE_KEY = "sk-canary-proxy-route-5d1e9a77c3"
CLIENT_KEY = "sk-canary-proxy-client-0b4f62e81a"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _ctrl_c_as_in_a_terminal() -> None:
    """The proxy takes SIGINT as from a terminal's Ctrl-C, even where the tests run as a background job (which
    ignores SIGINT, and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(workdir: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "proxy", "--listen", f"127.0.0.1:{port}", *args],
                               env={**os.environ, **env}, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    wait_for_port(port, process, 60)
    return process, f"http://127.0.0.1:{port}/v1"


def _ended(process: subprocess.Popen[str], seconds: float = 60) -> tuple[str, str]:
    """The stopped proxy's stdout and stderr; should it not end within `seconds`, every thread's stack (SIGUSR1)
    goes into the failure, so a hang says where it hangs."""
    try:
        return process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"the proxy did not end within {seconds:g} s; its threads:\n{stderr[-6000:]}") from None


def _loop(base_url: str, *, keep_reasoning: bool) -> list[int]:
    """A two-step tool loop, its history kept whole or hand-built without reasoning; the statuses it got."""
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    body: dict[str, Any] = {"model": "kimi-k2.7-code", "max_tokens": 16000, "tools": [WEATHER],
                            "messages": [{"role": "user", "content": f"Weather in Paris? ({keep_reasoning})"}]}
    first = httpx2.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=60)
    message = first.json()["choices"][0]["message"]
    if not keep_reasoning:
        message = {k: v for k, v in message.items() if k != "reasoning_content"}
    body["messages"] += [message, {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "ok"}]
    second = httpx2.post(f"{base_url}/chat/completions", json={**body, "stream": True}, headers=headers, timeout=60)
    return [first.status_code, second.status_code]


def test_a_proxy_run_records_sessions_and_findings_and_keeps_no_secret(cli, emulator, workdir: Path) -> None:
    server = emulator(api_key=ROUTE_KEY)
    process, base_url = _start(workdir, route_env(server, key=ROUTE_KEY), "--json")
    try:
        assert _loop(base_url, keep_reasoning=True) == [200, 200]
        assert _loop(base_url, keep_reasoning=False) == [200, 400]
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = _ended(process)
    assert process.returncode == 130, stderr[-1500:]
    document = json.loads(stdout)
    assert document["status"] == "interrupted" and document["requests"] == 4 and document["sessions"] == 2
    assert document["findings_by_kind"] == {"reasoning_dropped": 1}
    (finding,) = document["findings"]
    assert finding["request"] == 4 and finding["pointer"] == "/messages/1/reasoning_content"
    assert document["metrics"]["total_tokens"]["n"] == 4
    store = Store()
    try:
        run = store.find_run(document["run_id"])
        calls = store.calls(run.id)
        sessions = store.samples(run.id)
        page = write_proxy_report(store, run.id, workdir / "proxy.html").read_text()
    finally:
        store.dispose()
    assert "reasoning_dropped</b>\nat <code>/messages/1/reasoning_content</code> — would be a 400 at Moonshot" in page
    assert "4 requests in 2 sessions · 1 findings" in page and "relayed" in page
    assert ROUTE_KEY not in page and CLIENT_KEY not in page
    assert run.command == "proxy" and run.status == "interrupted"
    assert [c["step"] for c in calls] == [1, 2, 3, 4] and [c["status"] for c in calls] == [200, 200, 200, 400]
    assert len(sessions) == 2 and {c["sample_id"] for c in calls} == {s.id for s in sessions}
    text = stdout + stderr
    assert ROUTE_KEY not in text and CLIENT_KEY not in text
    # a person judges a session the proxy could not: the review counts in its accepted rate and repair time
    reviewed = cli("review", run.id[:8], "--sample", "session-2", "--reject", "--repair-minutes", "4")
    assert reviewed.code == 0, reviewed.stderr
    figures = cli("report", run.id[:8], "--html", str(workdir / "again.html"))
    assert figures.code == 0, figures.stderr
    from k2probe.eval.evaluate import metrics_of_run

    store = Store()
    try:
        overall = metrics_of_run(store, store.find_run(run.id)).overall
    finally:
        store.dispose()
    assert overall.accepted_rate.n == 1 and overall.accepted_rate.value == 0.0 and overall.repair_minutes.total == 4
    _view_a_proxy_run(run.id)

    for path in (workdir / "home").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert ROUTE_KEY.encode() not in data and CLIENT_KEY.encode() not in data, path


def test_sigterm_ends_a_proxy_run_as_interrupted_with_its_summary(emulator, workdir: Path) -> None:
    server = emulator()
    process, base_url = _start(workdir, route_env(server), "--mode", "enforce")
    try:
        refused = httpx2.post(f"{base_url}/chat/completions", timeout=60, json={
            "model": "kimi-k2.7-code", "temperature": 0, "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}]})
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = _ended(process)
    assert refused.status_code == 400 and "only 1 is allowed" in refused.text
    assert process.returncode == 143, stderr[-1500:]
    assert "1 requests in 1 sessions, 1 findings" in stdout and "fixed_parameter: 1" in stdout
    assert "fixed_parameter at /temperature — would be a 400 at Moonshot (refused here)" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("args,said", [
    (("--listen", "0.0.0.0:8787"), "beyond this machine"), (("--listen", "nowhere"), "is not HOST:PORT"),
    (("--mode", "fix"), "is not one of observe, enforce, repair"),
    (("--listen", "0.0.0.0:8787", "--allow-remote"), "without a --token")])
def test_bad_proxy_options_are_one_line_and_exit_2(cli, workdir: Path, args: tuple[str, ...], said: str) -> None:
    done = cli("proxy", *args)
    assert done.code == 2 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _bodies() -> list[dict[str, Any]]:
    return [{"model": "kimi-k2.7-code", "max_tokens": 2000, "stream": i % 2 == 0,
             "messages": [{"role": "user", "content": f"Review function number {i}, briefly."}]} for i in range(12)]


def test_a_proxy_runs_metrics_equal_those_of_the_same_calls_made_directly(workdir: Path) -> None:
    with k2probe.emulator(ttft_ms=30, itl_ms=2) as emu:
        with api.command_contexts("chat", emu.route()) as (routed, run):
            direct_run = run.run_id
            sample = run.store.start_sample(run.run_id, "direct", "all", routed.route.name)

            async def direct() -> None:
                async with routed.transport(on_call=run.record) as transport:
                    with linked(sample_id=sample):
                        for body in _bodies():
                            assert (await transport.chat(body)).ok

            asyncio.run(direct())
        with api.command_contexts("proxy", emu.route()) as (routed, run):
            proxied_run = run.run_id
            proxy = Proxy(routed.route, routed.profile, sink=StoreSink(run, routed.route.name))
            with ProxyServer(proxy) as server:
                via = routed.route.model_copy(update={"base_url": server.base_url})

                async def through() -> None:
                    async with Transport(via, routed.profile) as transport:
                        for body in _bodies():
                            assert (await transport.chat(body)).ok

                asyncio.run(through())
                deadline = time.monotonic() + 10
                while proxy.stats.requests < 12 and time.monotonic() < deadline:
                    time.sleep(0.01)
    store = Store()
    try:
        direct_m, proxied_m = (compute(store, r).overall for r in (direct_run, proxied_run))
        direct_calls, proxied_calls = (store.calls(r) for r in (direct_run, proxied_run))
    finally:
        store.dispose()
    assert proxied_m.total_tokens == direct_m.total_tokens and proxied_m.total_tokens.n == 12
    assert proxied_m.cost_per_accepted_usd.total_cost_usd == direct_m.cost_per_accepted_usd.total_cost_usd
    assert proxied_m.retries == direct_m.retries
    # the proxy times the route as a direct client does (from the request's first byte on the wire), so its
    # figures are the route's: a generous bound on a shared box, where the is 2 ms
    for key in ("latency_ms", "ttft_ms"):
        pairs = [(a[key], b[key]) for a, b in zip(direct_calls, proxied_calls, strict=True) if a[key] is not None]
        assert pairs and all(b is not None for _, b in pairs)
        mean_gap = sum(abs(a - b) for a, b in pairs) / len(pairs)
        assert mean_gap < 15, (key, pairs)


def _view_a_proxy_run(run_id: str) -> None:
    """The viewer shows a proxy run's sessions with their findings, and takes a session's review where it is read."""
    import re

    import httpx

    from .test_view import Viewer

    view = Viewer()
    try:
        with httpx.Client(base_url=view.url, timeout=60) as http:
            page = http.get(f"/runs/{run_id}").text
            assert "accepted rate" in page and ">session-1</a>" in page and ">session-2</a>" in page
            link = re.search(rf'href="(/runs/{run_id}/samples/[0-9a-f-]+)">session-2<', page)
            assert link
            session = http.get(link.group(1)).text
            assert "<b>reasoning_dropped</b> at <code>/messages/1/reasoning_content</code>" in session
            assert "would be a 400 at Moonshot" in session and ROUTE_KEY not in session and CLIENT_KEY not in session
            other = re.search(rf'href="(/runs/{run_id}/samples/([0-9a-f-]+))">session-1<', page)
            assert other
            token = re.search(r'name="form_token" value="([0-9a-f]+)"', http.get(other.group(1)).text)
            assert token
            done = http.post(f"/runs/{run_id}/review", data={"form_token": token.group(1), "sample": other.group(2),
                                                             "verdict": "accept"},
                             headers={"sec-fetch-site": "same-origin"})
            assert done.status_code == 303, done.text
            rate = http.get(f"/runs/{run_id}/metrics.json").json()["metrics"]["overall"]["accepted_rate"]
            assert rate["n"] == 2 and rate["value"] == 0.5
    finally:
        view.stop()


def _writer_of(pid: int) -> int:
    """The pid of the proxy's store writer (its child `python -m k2probe.recording.writer`)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == pid and b"k2probe.recording.writer" in command:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError("the proxy started no store writer")


def test_a_proxy_killed_outright_loses_no_call_it_answered(emulator, workdir: Path) -> None:
    """The calls are written by a child process: the proxy killed with SIGKILL, the child still commits every call
    it was handed (the end of its pipe is all it waits for)."""
    server = emulator(api_key=ROUTE_KEY)
    process, base_url = _start(workdir, route_env(server, key=ROUTE_KEY))
    try:
        writer = _writer_of(process.pid)
        for _ in range(3):
            assert _loop(base_url, keep_reasoning=True) == [200, 200]
        time.sleep(1.0)  # the last answers' records handed to the writer (they follow the answer, not precede it)
    finally:
        process.kill()
        _ended(process)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{writer}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    store = Store()
    try:
        (run,) = [r for r in store.runs(5) if r.command == "proxy"]
        calls = store.calls(run.id)
        assert len(calls) == 6 and {c["sample_id"] for c in calls} == {s.id for s in store.samples(run.id)}
        assert ROUTE_KEY not in json.dumps(calls)
    finally:
        store.dispose()


def test_a_store_writer_that_dies_ends_the_proxy_run_with_one_line(emulator, workdir: Path) -> None:
    server = emulator(api_key=ROUTE_KEY)
    process, _ = _start(workdir, route_env(server, key=ROUTE_KEY))
    try:
        os.kill(_writer_of(process.pid), signal.SIGKILL)
        _, stderr = _ended(process)  # it stops by itself: nothing more could be recorded
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, stderr[-1500:]
    assert "the store failed" in stderr and "writer process ended" in stderr and "Traceback" not in stderr
