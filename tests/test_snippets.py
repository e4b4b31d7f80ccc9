"""`k2probe snippet` replays the known-good request as curl, Python and Node code; each is run for real."""

from __future__ import annotations

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
