"""doctor's fixes point the right way: each in the terms of the route's own provider or gateway, one failure taxonomy
shared with bench, and the user's actual mistake (a pasted `Bearer `, https:// to a plain-HTTP server) named."""

from __future__ import annotations

from .conftest import EMULATOR_KEY, route_env


def _doctor(cli, env):
    result = cli("doctor", "--json", env=env)
    data = result.json()
    return data, {c["id"]: c for c in data["checks"]}


def test_a_key_pasted_with_bearer_gets_the_fix_remove_the_prefix(cli, emulator):
    server = emulator()
    data, checks = _doctor(cli, route_env(server, key=f"Bearer {EMULATOR_KEY}"))
    assert data["diagnosis"] == "invalid_key"
    assert "remove the `Bearer ` prefix" in checks["key"]["fix"] and "tr -d" not in checks["key"]["fix"]
    chat = cli("chat", "hi", env=route_env(server, key=f"Bearer {EMULATOR_KEY}"))
    assert chat.code == 2 and "remove the `Bearer ` prefix" in chat.stderr and "tr -d" not in chat.stderr


def test_https_to_a_plain_http_server_is_named_as_such(cli, emulator):
    server = emulator()
    data, checks = _doctor(cli, route_env(server, base_url=server.base_url.replace("http://", "https://")))
    assert data["diagnosis"] == "bad_base_url"
    assert "TLS handshake in plain HTTP" in checks["base_url"]["detail"]
    assert "http://" in checks["base_url"]["fix"] and "is the server running" not in checks["base_url"]["fix"]


def test_a_gateways_invalid_key_fix_speaks_of_the_gateway_not_of_cn_and_ai(cli, emulator):
    server = emulator(personality="litellm")
    data, checks = _doctor(cli, route_env(server, key="sk-not-the-gateways-key-01"))
    assert data["diagnosis"] == "invalid_key"
    fix = checks["key"]["fix"]
    assert "127.0.0.1" in fix and "gateway's own key" in fix and ".cn" not in fix


def test_a_cut_stream_is_stream_cut_in_doctor_as_in_bench(cli, emulator):
    server = emulator(faults={"cut": 1.0})
    data, checks = _doctor(cli, route_env(server))
    assert data["diagnosis"] == "stream_cut", data
    assert "proxy" in checks["streaming"]["fix"]
    bench = cli("bench", "--concurrency", "1", "--requests", "3", env=route_env(server), timeout=300)
    assert bench.code == 1 and "not one request succeeded (stream_cut 3)" in bench.stderr, bench.stderr[-2000:]
