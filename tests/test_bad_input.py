"""Bad input gets one readable line, exit 2, no traceback, and nothing already recorded is lost."""

from __future__ import annotations

import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from .conftest import route_env


def _one_clear_line(result, *needles):
    assert result.code == 2, (result.code, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("k2probe:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_malformed_toml(cli, workdir: Path):
    (workdir / "k2probe.toml").write_text("[routes.team\nbase_url = 'x'\n")
    _one_clear_line(cli("routes"), "k2probe.toml is not valid TOML")


def test_unknown_field_in_toml(cli, workdir: Path):
    (workdir / "k2probe.toml").write_text("[routes.team]\nbase_url = 'https://x/v1'\napi_key = 'sk-inline'\n")
    _one_clear_line(cli("routes"), "routes.team.api_key", "unknown key")


def test_unknown_route(cli, workdir: Path):
    (workdir / "k2probe.toml").write_text("[routes.direct]\nbase_url = 'https://api.moonshot.ai/v1'\n")
    _one_clear_line(cli("chat", "hi", "--route", "nope"), "unknown route 'nope'", "direct")


@pytest.mark.parametrize("param", ["temperature", "=3", "temp erature=1"])
def test_bad_param(cli, param):
    _one_clear_line(cli("doctor", "--param", param), "bad --param", "NAME=VALUE")


def test_missing_key_for_a_configured_url(cli, emulator):
    server = emulator()
    _one_clear_line(cli("chat", "hi", env={"AI_GATEWAY_BASE_URL": server.base_url}), "no API key",
                    "export AI_GATEWAY_API_KEY")


def test_wrong_key_on_chat(cli, emulator):
    result = cli("chat", "hi", env=route_env(emulator(), key="sk-not-the-right-key-123"))
    _one_clear_line(result, "HTTP 401", "invalid_key")
    assert "sk-not-the-right-key-123" not in result.stderr + result.stdout


def test_unknown_snippet_language(cli):
    _one_clear_line(cli("snippet", "--lang", "cobol"), "unknown language 'cobol'")


def test_snippet_before_smoke(cli):
    _one_clear_line(cli("snippet", "--lang", "curl"), "no known-good record", "k2probe smoke")


@pytest.fixture
def html_server():
    class Page(BaseHTTPRequestHandler):
        def _page(self) -> None:
            body = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _page

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_server_answering_html(cli, html_server, workdir: Path, emulator):
    # first, something recorded that must survive
    assert cli("chat", "hi", "--json", env=route_env(emulator())).code == 0
    env = {"AI_GATEWAY_API_KEY": "sk-k2probe-emulator", "AI_GATEWAY_BASE_URL": html_server}
    for args in (("chat", "hi"), ("smoke",), ("chat", "hi", "--stream")):
        result = cli(*args, env=env)
        _one_clear_line(result, "non-JSON" if "--stream" not in args else "asked for a stream", "bad_base_url")
    doctor = cli("doctor", "--json", env=env)
    assert doctor.code == 1 and doctor.json()["diagnosis"] == "bad_base_url"
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        commands = [row[0] for row in db.execute("select command from runs order by started_at")]
        statuses = [row[0] for row in db.execute("select status from calls")]
    assert commands[0] == "chat" and len(commands) == 5
    assert 200 in statuses  # the first, good call is still there
