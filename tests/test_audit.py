"""`k2probe audit` finds what a route changes: each emulator personality's rewrites, and none on a faithful route."""

from __future__ import annotations

import pytest

from .conftest import route_env

CASES = [
    # (personality, model, aliases, findings expected, findings that must not appear)
    ("moonshot", "kimi-k2.7-code", {}, set(), {"param_swallowed", "usage_rewritten"}),
    ("litellm", "kimi-moonshot", {"kimi-moonshot": "kimi-k2.7-code"},
     {"param_swallowed", "tool_choice_rewritten", "reasoning_injected", "usage_missing", "usage_rewritten",
      "thinking_refused"}, {"reasoning_dropped", "model_substituted"}),
    ("param-dropper", "kimi-k2.7-code", {}, {"param_swallowed"}, {"reasoning_injected", "tool_choice_rewritten"}),
    ("lossy-relay", "kimi-k2.7-code", {}, {"reasoning_dropped"}, {"param_swallowed"}),
    ("openrouter", "moonshotai/kimi-k2.7-code", {}, set(), {"reasoning_dropped", "usage_missing"}),
]


@pytest.mark.parametrize(("personality", "model", "aliases", "expected", "absent"), CASES, ids=[c[0] for c in CASES])
def test_audit_findings_per_personality(cli, emulator, personality, model, aliases, expected, absent):
    server = emulator(personality=personality, aliases=aliases)
    env = {**route_env(server, model=model), "KIMI_CODING_PROFILE": "kimi-k2.7-code"}
    result = cli("audit", "--json", env=env)
    data = result.json()
    found = {f["id"] for f in data["findings"]}
    assert expected <= found and not (absent & found), found
    assert data["verdict"] == ("faithful" if not expected else "rewrites")
    assert result.code == (0 if not expected else 1), result.stderr
    for finding in data["findings"]:
        assert finding["severity"] in ("high", "medium", "low", "info") and finding["detail"]
        assert isinstance(finding["evidence"], dict)
    if personality == "param-dropper":  # one finding per fixed parameter, each naming it
        params = {f["evidence"]["param"] for f in data["findings"] if f["id"] == "param_swallowed"}
        assert params == {"temperature", "top_p", "n", "presence_penalty", "frequency_penalty"}


def test_audit_measures_the_latency_a_route_adds_over_a_baseline(cli, emulator, workdir):
    direct = emulator()
    relay = emulator(personality="litellm", ttft_ms=40, aliases={"kimi-moonshot": "kimi-k2.7-code"})
    (workdir / "k2probe.toml").write_text(
        f"[routes.direct]\nbase_url = '{direct.base_url}'\napi_key_env = 'DIRECT_KEY'\nmodel = 'kimi-k2.7-code'\n"
        f"[routes.relay]\nbase_url = '{relay.base_url}'\napi_key_env = 'RELAY_KEY'\nmodel = 'kimi-moonshot'\n"
        "profile = 'kimi-k2.7-code'\n")
    env = {"DIRECT_KEY": "sk-k2probe-emulator", "RELAY_KEY": "sk-k2probe-emulator"}
    result = cli("audit", "--route", "relay", "--baseline", "direct", "--json", env=env)
    data = result.json()
    assert result.code == 1 and data["route"] == "relay"
    added = data["added_latency_ms"]
    assert added["n"] >= 5 and added["median_ms"] > 25  # the relay's injected 40 ms, measured against the direct route
