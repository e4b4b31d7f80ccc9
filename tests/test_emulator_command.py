"""`k2probe emulator` serves on loopback with its options, and refuses bad ones with one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_emulator_command_serves_with_its_options(tmp_path):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "emulator", "--port", str(port), "--api-key",
                                "sk-cmd-key", "--personality", "openrouter", "--fault", "quota=1"],
                               cwd=tmp_path, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        for _ in range(100):
            try:
                models = httpx.get(f"{base}/models", headers={"Authorization": "Bearer sk-cmd-key"}, timeout=1)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert models.status_code == 200
        assert models.json()["data"][0]["id"] == "moonshotai/kimi-k2.7-code"  # the openrouter personality
        chat = httpx.post(f"{base}/chat/completions", headers={"Authorization": "Bearer sk-cmd-key"},
                          json={"model": "moonshotai/kimi-k2.7-code", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 429 and "exceeded_current_quota_error" in chat.json()["error"]["metadata"]["raw"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_bad_fault_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "k2probe", "emulator", "--fault", "meteor=0.5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown fault kind(s) ['meteor']" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_busy_port_is_one_line_and_exit_2_with_no_serving_banner(cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("emulator", "--port", str(port), timeout=60)
    assert result.code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"k2probe: cannot serve on 127.0.0.1:{port}: the port is in use — choose another --port (or stop what listens "
        "there)"]
    assert "on http://" not in result.stdout + result.stderr and "Errno" not in result.stderr


def test_a_non_loopback_host_needs_allow_remote_and_a_key_of_ones_own(cli):
    refused = cli("emulator", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert refused.code == 2 and "beyond this machine" in refused.stderr and "--allow-remote" in refused.stderr
    default_key = cli("emulator", "--host", "0.0.0.0", "--port", "0", "--allow-remote", timeout=60)
    assert default_key.code == 2 and "default key" in default_key.stderr and "--api-key" in default_key.stderr
    assert "on http://" not in refused.stdout + default_key.stdout


def test_log_names_every_contract_violation_while_the_answer_is_moonshots_first(tmp_path):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "emulator", "--port", str(port), "--log"],
                               cwd=tmp_path, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        auth = {"Authorization": "Bearer sk-k2probe-emulator"}
        for _ in range(100):
            try:
                httpx.get(f"{base}/models", headers=auth, timeout=1)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
        body = {"model": "kimi-k2.7-code", "temperature": 0.5, "top_p": 0.5, "tool_choice": "required",
                "tools": [tool], "messages": [{"role": "user", "content": "hi"}]}
        refused = httpx.post(f"{base}/chat/completions", headers=auth, json=body, timeout=30)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "invalid temperature: only 1 is allowed for this model"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    [line] = [x for x in err.splitlines() if "POST /v1/chat/completions 400" in x]
    assert "invalid temperature" in line and "invalid top_p" in line and "tool_choice 'required'" in line, err
    assert "GET /v1/models 200" in err
