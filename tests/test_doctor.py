"""`k2probe doctor` names each broken setup precisely, in the guide's order, with the fix."""

from __future__ import annotations

import socket

import pytest

from .conftest import EMULATOR_KEY, route_env


def _doctor(cli, env, *args):
    """Run doctor --json; its exit code must agree with the diagnosis (0 only for ok)."""
    result = cli("doctor", "--json", *args, env=env)
    data = result.json()
    assert result.code == (0 if data["diagnosis"] == "ok" else 1), result.stderr
    assert "Traceback" not in result.stderr
    checks = {c["id"]: c for c in data["checks"]}
    return result, data, checks


def test_ok_on_a_correct_setup(cli, emulator):
    result, data, checks = _doctor(cli, route_env(emulator()))
    assert result.code == 0, result.stderr
    assert data["diagnosis"] == "ok"
    assert [c["id"] for c in data["checks"]][:3] == ["key", "base_url", "model"]
    assert all(c["status"] == "pass" for c in data["checks"]), data
    assert "choices[0].usage" in checks["streaming"]["detail"]
    assert set(data) >= {"route", "diagnosis", "checks"}
    assert set(data["checks"][0]) >= {"id", "status", "detail", "fix"}


def test_no_key(cli, emulator):
    server = emulator()
    result, data, checks = _doctor(cli, {"AI_GATEWAY_BASE_URL": server.base_url})
    assert result.code == 1
    assert data["diagnosis"] == "missing_key"
    assert "AI_GATEWAY_API_KEY" in checks["key"]["fix"]
    assert server.state.requests_seen == 0  # nothing was sent without a key


def test_wrong_key(cli, emulator):
    result, data, checks = _doctor(cli, route_env(emulator(), key="sk-wrong-key-0000000000"))
    assert result.code == 1
    assert data["diagnosis"] == "invalid_key"
    assert "401" in checks["key"]["detail"] and "Invalid Authentication" in checks["key"]["detail"]
    assert "sk-wrong-key-0000000000" not in result.stdout + result.stderr


def test_doubled_v1_names_the_url_that_works(cli, emulator):
    server = emulator()
    _, data, checks = _doctor(cli, route_env(server, base_url=server.base_url + "/v1"))
    assert data["diagnosis"] == "doubled_v1"
    assert f"use {server.base_url} " in checks["base_url"]["fix"]


def test_base_url_without_v1(cli, emulator):
    server = emulator()
    bare = server.base_url.removesuffix("/v1")
    _, data, checks = _doctor(cli, route_env(server, base_url=bare))
    assert data["diagnosis"] == "missing_v1"
    assert f"use {server.base_url} " in checks["base_url"]["fix"]


def test_misspelt_model_suggests_the_right_one(cli, emulator):
    _, data, checks = _doctor(cli, route_env(emulator(), model="kimi-k2.7-cod"))
    assert data["diagnosis"] == "unknown_model"
    assert "Not found the model kimi-k2.7-cod or Permission denied" in checks["model"]["detail"]
    assert checks["model"]["evidence"]["suggestions"][0] == "kimi-k2.7-code"
    assert "kimi-k2.7-code" in checks["model"]["fix"]


def test_team_default_temperature(cli, emulator):
    _, data, checks = _doctor(cli, route_env(emulator()), "--param", "temperature=0.2")
    assert data["diagnosis"] == "unsupported_param"
    assert "invalid temperature: only 1 is allowed for this model" in checks["params"]["detail"]
    assert "temperature" in checks["params"]["fix"]


def test_team_default_tool_choice_required(cli, emulator):
    _, data, _ = _doctor(cli, route_env(emulator()), "--param", "tools=[]", "--param", "tool_choice=required")
    assert data["diagnosis"] == "tool_choice_rejected"


def test_lossy_relay_drops_reasoning(cli, emulator):
    _, data, checks = _doctor(cli, route_env(emulator(personality="lossy-relay")))
    assert data["diagnosis"] == "reasoning_dropped"
    assert checks["reasoning"]["status"] == "fail"
    assert "reasoning_content is missing in assistant tool call message at index 1" in checks["reasoning"]["detail"]


def test_a_route_that_swallows_fixed_params_is_not_ok(cli, emulator):
    """A warning that matters changes the verdict: the route rewrites the contract (gateway_rewrites)."""
    _, data, checks = _doctor(cli, route_env(emulator(personality="param-dropper")))
    assert data["diagnosis"] == "gateway_rewrites"
    assert checks["fixed_params"]["status"] == "fail" and "param_swallowed" in checks["fixed_params"]["detail"]
    assert "k2probe audit" in checks["fixed_params"]["fix"]
    assert checks["reasoning_injected"]["status"] == "pass"  # it still refuses a turn without its reasoning


def test_a_litellm_route_is_diagnosed_gateway_rewrites(cli, emulator):
    server = emulator(personality="litellm", aliases={"kimi-moonshot": "kimi-k2.7-code"})
    _, data, checks = _doctor(cli, route_env(server, model="kimi-moonshot"))
    assert data["diagnosis"] == "gateway_rewrites", data
    # LiteLLM echoes the alias in answers: the profile comes from its /model/info
    assert "/model/info maps it to 'moonshot/kimi-k2.7-code'" in checks["profile"]["detail"]
    for check in ("fixed_params", "tool_choice", "reasoning_injected"):
        assert checks[check]["status"] == "fail" and checks[check]["code"] == "gateway_rewrites", checks[check]


def test_openrouter_reasoning_field_is_named(cli, emulator):
    server = emulator(personality="openrouter")
    _, data, checks = _doctor(cli, route_env(server, model="moonshotai/kimi-k2.7-code"))
    assert data["diagnosis"] == "ok", data
    assert checks["reasoning"]["status"] == "warn" and "'reasoning'" in checks["reasoning"]["detail"]


@pytest.mark.parametrize(("fault", "diagnosis"), [("rate_limit", "rate_limited"), ("quota", "quota_exhausted"),
                                                  ("server_error", "server_error")])
def test_rate_limited_vs_quota(cli, emulator, fault, diagnosis):
    result, data, _ = _doctor(cli, route_env(emulator(faults={fault: 1.0}, retry_after_s=0.01)))
    assert result.code == 1
    assert data["diagnosis"] == diagnosis


def test_nothing_listening(cli):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {"AI_GATEWAY_API_KEY": EMULATOR_KEY, "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    result, data, checks = _doctor(cli, env)
    assert result.code == 1
    assert data["diagnosis"] == "unreachable"
    assert f"127.0.0.1:{port}" in checks["base_url"]["detail"]


def test_doctor_table_output(cli, emulator):
    result = cli("doctor", env=route_env(emulator(personality="lossy-relay")))
    assert result.code == 1
    assert "diagnosis: reasoning_dropped" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_gateway_alias_gets_the_kimi_profile_by_inference_with_a_notice(cli, emulator):
    server = emulator(aliases={"kimi-moonshot": "kimi-k2.7-code"}, personality="param-dropper")
    env = route_env(server, model="kimi-moonshot")
    result, _, checks = _doctor(cli, env, "--param", "temperature=0.2")
    assert "matches no known profile" in result.stderr  # the fallback is said, never silent
    assert checks["profile"]["status"] == "warn" and "kimi-k2.7-code" in checks["profile"]["detail"]
    assert "KIMI_CODING_PROFILE=kimi-k2.7-code" in checks["profile"]["fix"]
    # judged with the inferred Kimi profile, a dropped temperature is a warning, not "team defaults accepted"
    assert checks["params"]["status"] == "warn" and "ignores them silently" in checks["params"]["detail"]
    chat = cli("chat", "hi", "--json", env={**env, "KIMI_CODING_PROFILE": "kimi-k2.7-code"})
    assert chat.code == 0, chat.stderr
    assert "matches no known profile" not in chat.stderr and chat.json()["cost_usd"] > 0  # priced as Kimi


def test_a_model_with_no_profile_says_so_in_every_command(cli, emulator):
    server = emulator(aliases={"team-coder": "kimi-k2.7-code"})
    result = cli("chat", "hi", "--json", env=route_env(server, model="team-coder"))
    assert result.code == 0, result.stderr
    assert "matches no known profile" in result.stderr and "KIMI_CODING_PROFILE" in result.stderr
