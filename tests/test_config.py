"""Configuration from the environment and k2probe.toml; base URL and key checks that never rewrite silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2probe.core.config import check_base_url, check_key, mask_key, resolve_route
from k2probe.core.errors import ConfigError


@pytest.mark.parametrize(("url", "code", "fragment"), [
    ("https://api.moonshot.ai/v1/v1", "doubled_v1", "use https://api.moonshot.ai/v1"),
    ("https://api.moonshot.ai", "missing_v1", "try https://api.moonshot.ai/v1"),
    ("https://api.moonshot.ai/v1/", "bad_base_url", "use https://api.moonshot.ai/v1"),
    ("https://api.moonshot.ai/v1/chat/completions", "bad_base_url", "use https://api.moonshot.ai/v1"),
    ("api.moonshot.ai/v1", "bad_base_url", "https://"),
    (" https://api.moonshot.ai/v1", "bad_base_url", "remove"),
])
def test_base_url_findings(url, code, fragment):
    findings = check_base_url(url)
    assert (findings and findings[0].code == code) or any(f.code == code for f in findings)
    assert any(fragment in f.fix for f in findings)


def test_good_urls_have_no_findings():
    for url in ("https://api.moonshot.ai/v1", "https://openrouter.ai/api/v1", "http://127.0.0.1:8000/v1"):
        assert check_base_url(url) == []


def test_key_findings_do_not_quote_the_key():
    findings = check_key(' "sk-abc123" ')
    assert findings and all("sk-abc123" not in f.message + f.fix for f in findings)
    assert check_key("Bearer sk-x")[0].code == "invalid_key"
    assert mask_key("sk-1234567890abcdefXYZW") == "…XYZW (23 chars)" and "sk-1" not in mask_key("sk-1234")


def test_environment_route(workdir, monkeypatch):
    assert resolve_route().emulated  # nothing configured: the emulator
    monkeypatch.setenv("MOONSHOT_API_KEY", "sk-moon")
    monkeypatch.setenv("KIMI_CODING_MODEL", "kimi-k2.7-code-highspeed")
    route = resolve_route()
    assert not route.emulated and route.base_url == "https://api.moonshot.ai/v1"
    assert route.api_key_env == "MOONSHOT_API_KEY" and route.model == "kimi-k2.7-code-highspeed"
    monkeypatch.setenv("AI_GATEWAY_API_KEY", "sk-gw")
    assert resolve_route().api_key_env == "AI_GATEWAY_API_KEY"


def test_toml_routes(workdir: Path, monkeypatch):
    (workdir / "k2probe.toml").write_text(
        "default_route = 'gw'\n"
        "[routes.gw]\nbase_url = 'https://wisgate.ai/v1'\napi_key_env = 'WISGATE_KEY'\n"
        "params = { temperature = 0.2 }\nprice = { cache_miss_input = 1.0, output = 5.0 }\n"
        "[routes.local]\nemulator = true\npersonality = 'lossy-relay'\n")
    monkeypatch.setenv("WISGATE_KEY", "sk-wis-12345678901234")
    route = resolve_route()
    assert route.name == "gw" and route.key() == "sk-wis-12345678901234" and route.params == {"temperature": 0.2}
    assert "sk-wis" not in str(route.public())
    local = resolve_route("local")
    assert local.emulated and local.personality == "lossy-relay"
    with pytest.raises(ConfigError, match="unknown route"):
        resolve_route("missing")


def test_routes_command_masks_keys(cli, workdir: Path):
    (workdir / "k2probe.toml").write_text("[routes.gw]\nbase_url = 'https://wisgate.ai/v1'\napi_key_env = 'K'\n")
    result = cli("routes", "--json", env={"K": "sk-secret-abcdefghijklmnop"})
    routes = {r["name"]: r for r in result.json()["routes"]}
    assert routes["gw"]["api_key"] == "…mnop (26 chars)" and "secret" not in result.stdout
    assert routes["emulator"]["emulated"] is True


def test_toml_emulator_routes_end_to_end(cli, workdir: Path):
    (workdir / "k2probe.toml").write_text(
        "[routes.relay]\nemulator = true\npersonality = 'lossy-relay'\n"
        "[routes.generic]\nemulator = true\nprofile = 'openai-compatible'\n"
        "[routes.priced]\nemulator = true\nprice = { cache_miss_input = 2.0, output = 10.0, source = 'team sheet' }\n")
    doctor = cli("doctor", "--route", "relay", "--json")
    assert doctor.code == 1 and doctor.json()["diagnosis"] == "reasoning_dropped"
    relay_chat = cli("chat", "hi", "--route", "relay")
    assert relay_chat.code == 0 and "may strip reasoning_content" in relay_chat.stderr
    unknown = cli("chat", "hi", "--route", "generic", "--json").json()
    assert unknown["cost_usd"] is None and unknown["price_source"] == "cost unknown"  # never a silent $0
    assert "cost unknown" in cli("chat", "hi", "--route", "generic").stderr  # figures beside the answer, on stderr
    priced = cli("chat", "hi", "--route", "priced", "--json").json()
    expected = (priced["prompt_tokens"] * 2.0 + priced["completion_tokens"] * 10.0) / 1e6
    assert priced["cost_usd"] == pytest.approx(expected) and priced["price_source"] == "team sheet (user override)"
    kimi = cli("chat", "hi", "--json").json()
    assert "platform.kimi.ai" in kimi["price_source"] and kimi["cost_usd"] > 0


def test_a_route_name_of_any_length_or_shape_has_a_known_good_file_of_its_own(workdir):
    from k2probe.core.config import known_good_path

    long_a, long_b = "r" * 300 + "a", "r" * 300 + "b"
    paths = {known_good_path(name) for name in (long_a, long_b, "a/b", "a_b", "..", "emulator")}
    assert len(paths) == 6  # no two names share a file
    assert known_good_path("emulator").name == "emulator.json"
    for path in paths:
        assert len(path.name) <= 255 and path.parent.name == "known-good"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")  # a file system takes the name
