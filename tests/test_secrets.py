"""With a canary key, nothing under K2PROBE_HOME, no snippet and no command output contains it."""

from __future__ import annotations

from pathlib import Path

from .conftest import route_env

CANARY = "sk-canary-7f3a9c2e5b1d4068aa11"


def test_canary_key_never_leaves_memory(cli, emulator, workdir: Path):
    server = emulator(api_key=CANARY)
    env = route_env(server, key=CANARY)
    (workdir / "k2probe.toml").write_text(
        f"[routes.team]\nbase_url = '{server.base_url}'\napi_key_env = 'TEAM_KEY'\n"
        "headers = { 'X-Api-Key' = 'hdr-secret-123456' }\n")
    outputs = []
    for args in (("smoke", "--json"), ("smoke",), ("chat", "hi", "--stream"), ("chat", "hi", "--json"),
                 ("doctor", "--json"), ("doctor", "--param", "temperature=0.5"), ("routes",), ("routes", "--json"),
                 ("quickstart", "--json"), ("chat", "hi", "--route", "team")):
        result = cli(*args, env={**env, "TEAM_KEY": CANARY})
        outputs.append(result.stdout + result.stderr)
        assert "Traceback" not in result.stderr
    for lang in ("curl", "python", "node"):
        result = cli("snippet", "--lang", lang, env=env)
        assert result.code == 0
        assert "AI_GATEWAY_API_KEY" in result.stdout  # the snippet reads the key from the environment
        outputs.append(result.stdout + result.stderr)
    # a wrong key is a secret too
    wrong = "sk-wrongcanary-99999999999"
    result = cli("doctor", env=route_env(server, key=wrong))
    outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert CANARY not in text and wrong not in text
    assert "hdr-secret-123456" not in text
    files = [p for p in (workdir / "home").rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.suffix == ".html" for p in files)
    assert any(p.name.endswith(".json") for p in files)
    for path in files:
        data = path.read_bytes()
        assert CANARY.encode() not in data, path
        assert wrong.encode() not in data, path
