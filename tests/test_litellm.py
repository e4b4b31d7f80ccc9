"""Through a real LiteLLM proxy (its own venv: `litellm[proxy]`) in front of the emulator: what `audit` and `doctor`
find on its `moonshot/` model and on its `openai/` model. .ci/run installs the proxy and sets K2PROBE_LITELLM; without
it, the fixture installs it into a cached venv under /tmp."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from k2probe.emulator import EmulatorServer, EmulatorSettings
from k2probe.recording.store import Store

from .clientvenv import litellm_program
from .conftest import free_port, wait_for_port
from .fakeserver import FakeServer, JsonHandler

MASTER = "sk-litellm-master-0000"
@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[str]:
    """A LiteLLM proxy with a moonshot/ and an openai/ alias, both in front of one emulator; yields its base URL."""
    upstream = EmulatorServer(EmulatorSettings()).start()
    folder = tmp_path_factory.mktemp("litellm")
    config = folder / "config.yaml"
    lines = ["model_list:"]
    for alias, provider in (("kimi-moonshot", "moonshot"), ("kimi-openai", "openai")):
        lines += [f"  - model_name: {alias}", "    litellm_params:", f"      model: {provider}/kimi-k2.7-code",
                  f"      api_base: {upstream.base_url}", "      api_key: sk-k2probe-emulator"]
    lines += ["general_settings:", f"  master_key: {MASTER}"]
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    log = (folder / "proxy.log").open("w")
    process = subprocess.Popen([litellm_program(), "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, 120, folder / "proxy.log")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)
        upstream.stop()


def _env(proxy: str, model: str) -> dict[str, str]:
    return {"AI_GATEWAY_API_KEY": MASTER, "AI_GATEWAY_BASE_URL": proxy, "KIMI_CODING_MODEL": model}


def test_audit_through_litellm_finds_the_moonshot_providers_rewrites(cli, proxy):
    result = cli("audit", "--json", env={**_env(proxy, "kimi-moonshot"), "KIMI_CODING_PROFILE": "kimi-k2.7-code"},
                 timeout=300)
    data = result.json()
    found = {f["id"] for f in data["findings"]}
    assert {"param_swallowed", "tool_choice_rewritten", "reasoning_injected"} <= found, found
    assert found & {"usage_missing", "usage_rewritten"}, found
    assert result.code == 1 and data["verdict"] == "rewrites"
    swallowed = {f["evidence"]["param"] for f in data["findings"] if f["id"] == "param_swallowed"}
    assert swallowed == {"temperature"}  # LiteLLM pops temperature but forwards top_p and the penalties


def test_audit_through_litellm_openai_provider_does_not_rewrite_the_kimi_contract(cli, proxy):
    result = cli("audit", "--json", env={**_env(proxy, "kimi-openai"), "KIMI_CODING_PROFILE": "kimi-k2.7-code"},
                 timeout=300)
    found = {f["id"] for f in result.json()["findings"]}
    assert not found & {"param_swallowed", "tool_choice_rewritten", "reasoning_injected"}, found


def test_doctor_through_litellm_infers_the_profile_and_says_gateway_rewrites(cli, proxy):
    result = cli("doctor", "--json", env=_env(proxy, "kimi-moonshot"), timeout=300)
    data = result.json()
    checks = {c["id"]: c for c in data["checks"]}
    assert "matches no known profile" in result.stderr  # the alias is said, then resolved
    assert "moonshot/kimi-k2.7-code" in checks["profile"]["detail"]
    assert data["diagnosis"] == "gateway_rewrites" and result.code == 1


def test_litellm_errors_are_classified_by_their_words(cli, proxy):
    unknown = cli("doctor", "--json", env=_env(proxy, "kimi-nope"), timeout=120)
    assert unknown.json()["diagnosis"] == "unknown_model"
    bad_key = cli("doctor", "--json", env={**_env(proxy, "kimi-moonshot"), "AI_GATEWAY_API_KEY": "sk-wrong-key-0000"},
                  timeout=120)
    assert bad_key.json()["diagnosis"] == "invalid_key"


class CountingRelay(FakeServer):
    """A loopback relay in front of the proxy that counts the paths it was asked for (GET /model/info above all)."""

    def __init__(self, upstream: str) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(JsonHandler):
            def _relay(self, method: str) -> None:
                owner.paths.append(f"{method} {self.path}")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                answer = httpx.request(method, upstream.removesuffix("/v1") + self.path, content=body,
                                       headers=headers, timeout=120)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

        self.serve(Handler)

    def asked(self, path: str) -> int:
        return sum(1 for p in self.paths if p.endswith(path))


def _calls(run_id: str) -> list[dict[str, Any]]:
    """One run's chat calls as the store kept them: what k2probe sent, and what it priced."""
    store = Store()
    try:
        return [call for call in store.calls(run_id) if call["endpoint"] == "/chat/completions"]
    finally:
        store.dispose()


def _last_run(command: str) -> str:
    store = Store()
    try:
        return next(r.id for r in store.runs() if r.command == command)
    finally:
        store.dispose()


def test_an_alias_gets_its_profile_once_from_the_gateway_and_every_command_uses_it(cli, proxy):
    """No profile configured: audit, chat and eval through LiteLLM's `kimi-moonshot` all use the Kimi profile its
    /model/info names, asked once; a changed route (another base URL to the same proxy) is asked again."""
    with CountingRelay(proxy) as relay:
        env = _env(relay.base_url, "kimi-moonshot")
        audit = cli("audit", "--json", env=env, timeout=300)
        found = {f["id"] for f in audit.json()["findings"]}
        assert {"param_swallowed", "tool_choice_rewritten", "reasoning_injected"} <= found, found
        assert audit.json()["profile"] == "kimi-k2.7-code" and audit.code == 1
        assert "/model/info maps it to 'moonshot/kimi-k2.7-code'" in audit.stderr
        assert relay.asked("/model/info") == 1

        chat = cli("chat", "hi", "--param", "temperature=0.2", "--json", env=env, timeout=300)
        assert chat.code == 0, chat.stderr
        assert any("temperature=0.2 dropped" in line for line in chat.json()["changes"])  # Kimi fixes it at 1
        assert chat.json()["cost_usd"] > 0  # priced as Kimi
        sent = _calls(_last_run("chat"))[-1]["request"]
        assert "temperature" not in sent and sent["max_tokens"] == 32768  # the Kimi budget, not the generic 4096
        assert "K2PROBE_HOME/profiles.json" in chat.stderr  # the notice says it was resolved before
        assert relay.asked("/model/info") == 1  # reused, not asked again

        evaluated = cli("eval", "humaneval", "--limit", "2", "--json", env=env, timeout=600)
        assert evaluated.code == 0, evaluated.stderr
        calls = _calls(_last_run("eval"))
        assert len(calls) == 2 and all(c["cost_usd"] > 0 and "kimi" in c["price_source"] for c in calls)  # Kimi's price
        assert "unknown" not in str(evaluated.json()["metrics"])  # a generic profile leaves the cost unknown
        assert relay.asked("/model/info") == 1

        moved = _env(relay.base_url.replace("127.0.0.1", "localhost"), "kimi-moonshot")
        again = cli("chat", "hi", "--json", env=moved, timeout=300)
        assert again.code == 0, again.stderr
        assert relay.asked("/model/info") == 2  # another route: resolved again
        assert "/model/info maps it to" in again.stderr and "profiles.json" not in again.stderr
