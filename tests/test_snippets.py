"""`k2probe snippet` replays the known-good request as curl, Python and Node code; each is run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EMULATOR_KEY, route_env


@pytest.mark.parametrize("lang", ["curl", "python", "node"])
def test_snippet_runs_against_the_emulator(cli, emulator, workdir: Path, lang, node_modules):
    recorded = emulator()
    assert cli("smoke", env=route_env(recorded)).code == 0
    out = workdir / "snips"
    out.mkdir()
    name = {"curl": "known_good.sh", "python": "known_good.py", "node": "known_good.mjs"}[lang]
    result = cli("snippet", "--lang", lang, "--out", str(out / name), env=route_env(recorded))
    assert result.code == 0, result.stderr
    code = (out / name).read_text()
    assert EMULATOR_KEY not in code
    if lang == "node":
        (out / "node_modules").symlink_to(node_modules, target_is_directory=True)
    # a fresh emulator: the snippet must work from the environment alone, not from the recorded port
    live = emulator()
    env = {**os.environ, "AI_GATEWAY_API_KEY": EMULATOR_KEY, "AI_GATEWAY_BASE_URL": live.base_url}
    command = {"curl": ["sh", name], "python": [sys.executable, name], "node": [shutil.which("node") or "node", name]}
    done = subprocess.run(command[lang], cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "parse_total" in done.stdout  # the review came back
    assert live.state.requests_seen == 1 and recorded.state.requests_seen == 1


@pytest.mark.parametrize("lang", ["curl", "python", "node"])
def test_an_unset_key_is_one_line_and_an_emulator_snippet_says_how_to_replay(cli, workdir: Path, lang, node_modules):
    assert cli("smoke").code == 0  # nothing configured: the built-in emulator
    name = {"curl": "k.sh", "python": "k.py", "node": "k.mjs"}[lang]
    out = workdir / "snips"
    out.mkdir()
    assert cli("snippet", "--lang", lang, "--out", str(out / name)).code == 0
    code = (out / name).read_text()
    assert "k2probe emulator" in code and "http://127.0.0.1:8765/v1" in code
    if lang == "node":
        (out / "node_modules").symlink_to(node_modules, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT"))}
    command = {"curl": ["sh", name], "python": [sys.executable, name], "node": [shutil.which("node") or "node", name]}
    done = subprocess.run(command[lang], cwd=out, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1 and "export AI_GATEWAY_API_KEY=" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("lang", ["curl", "python", "node"])
def test_recorded_values_enter_a_snippet_as_data_never_as_code(cli, workdir: Path, lang, node_modules):
    """A route name, model id and base URL full of quotes, `$(…)`, backticks, line breaks and escapes: the snippet
    still runs, sends that model id exactly, and nothing in them runs."""
    from .untrusted_server import UntrustedGateway

    mark = workdir / "PWNED"
    evil = ("\"'`touch PWNED`$(touch PWNED)\n__import__('os').system('touch PWNED') # \"\"\" */ \u2028"
            "require('fs').writeFileSync('PWNED','') // \x1b]0;t\x07")  # run in workdir: PWNED is `mark`
    gateway = UntrustedGateway(lambda _key, _body: ([], ["parse_total reviewed"])).start()
    try:
        base_url = f"{gateway.base_url}/$(touch%20PWNED)"
        (workdir / "k2probe.toml").write_text(
            f"[routes.{json.dumps('r' + evil[:30])}]\nbase_url = {json.dumps(base_url)}\nmodel = {json.dumps(evil)}\n"
            'api_key_env = "AI_GATEWAY_API_KEY"\n')
        env = {"AI_GATEWAY_API_KEY": "zq-snippet-key-0123456789"}
        smoke = cli("smoke", "--route", "r" + evil[:30], env=env)
        assert smoke.code == 0, smoke.stderr
        name = {"curl": "k.sh", "python": "k.py", "node": "k.mjs"}[lang]
        written = cli("snippet", "--lang", lang, "--route", "r" + evil[:30], "--out", str(workdir / name), env=env)
        assert written.code == 0, written.stderr
        assert "\x1b" not in (workdir / name).read_text()
        if lang == "node":
            (workdir / "node_modules").symlink_to(node_modules, target_is_directory=True)
        command = {"curl": ["sh", name], "python": [sys.executable, name],
                   "node": [shutil.which("node") or "node", name]}
        run_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "KIMI_"))}, **env}
        done = subprocess.run(command[lang], cwd=workdir, env=run_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr  # the recorded base URL (the default) reached the gateway
        assert gateway.requests[-1]["model"] == evil  # the model id went out exactly as recorded
        assert not mark.exists()
    finally:
        gateway.stop()


def _run(lang: str, name: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = {"curl": ["sh", name], "python": [sys.executable, name], "node": [shutil.which("node") or "node", name]}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "KIMI_", "MOONSHOT"))}
    return subprocess.run(command[lang], cwd=folder, env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("lang", ["curl", "python", "node"])
def test_a_routes_snippet_sends_its_key_only_to_its_own_host(cli, workdir: Path, lang, node_modules):
    """Two routes: `a` with a key variable of its own, and the guide's variables pointing at another provider. Route a's
    snippet sends route a's key to route a's host, whatever AI_GATEWAY_BASE_URL says; the guide's pair still goes
    together (and KIMI_CODING_MODEL picks the model, in curl too)."""
    from .untrusted_server import UntrustedGateway

    keys: dict[str, list[str]] = {"a": [], "other": []}
    host_a = UntrustedGateway(lambda key, _body: (keys["a"].append(key), ([], ["parse_total ok"]))[1]).start()
    other = UntrustedGateway(lambda key, _body: (keys["other"].append(key), ([], ["parse_total ok"]))[1]).start()
    try:
        (workdir / "k2probe.toml").write_text(f'[routes.a]\nbase_url = "{host_a.base_url}"\napi_key_env = "A_KEY"\n'
                                              f'[routes.g]\nbase_url = "{host_a.base_url}"\n')
        name = {"curl": "k.sh", "python": "k.py", "node": "k.mjs"}[lang]
        if lang == "node":
            (workdir / "node_modules").symlink_to(node_modules, target_is_directory=True)
        assert cli("smoke", "--route", "a", env={"A_KEY": "zq-route-a-key-0001"}).code == 0
        assert cli("snippet", "--lang", lang, "--route", "a", "--out", name, env={"A_KEY": "x"}).code == 0
        done = _run(lang, name, workdir, {"A_KEY": "zq-route-a-key-0001", "AI_GATEWAY_BASE_URL": other.base_url,
                                          "KIMI_CODING_MODEL": "other-providers-model"})
        assert done.returncode == 0, done.stderr
        assert keys["other"] == [] and keys["a"][-1] == "zq-route-a-key-0001"
        assert host_a.requests[-1]["model"] == "kimi-k2.7-code"  # route a's model, not the other variable's

        guide_env = {"AI_GATEWAY_API_KEY": "zq-guide-key-0002"}
        assert cli("smoke", "--route", "g", env=guide_env).code == 0
        assert cli("snippet", "--lang", lang, "--route", "g", "--out", name, env=guide_env).code == 0
        done = _run(lang, name, workdir, {**guide_env, "AI_GATEWAY_BASE_URL": other.base_url,
                                          "KIMI_CODING_MODEL": "kimi-k2.7-code-highspeed"})
        assert done.returncode == 0, done.stderr
        assert keys["other"] == ["zq-guide-key-0002"] and other.requests[-1]["model"] == "kimi-k2.7-code-highspeed"
    finally:
        host_a.stop()
        other.stop()
