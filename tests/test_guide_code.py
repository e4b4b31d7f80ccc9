"""The guide's own Python code (Steps 3 and 5), unchanged, runs against the emulator with its three variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from .conftest import EMULATOR_KEY

STEP_3 = '''import os
from openai import OpenAI
client = OpenAI(
api_key=os.environ["AI_GATEWAY_API_KEY"],
base_url=os.environ["AI_GATEWAY_BASE_URL"],
)
response = client.chat.completions.create(
model=os.environ.get("KIMI_CODING_MODEL", "kimi-k2.7-code"),
messages=[
{
"role": "system",
"content": "You are a senior software engineer. Return concise code review notes and a safe patch plan.",
},
{
"role": "user",
"content": (
"Review this function for edge cases, then propose a typed Python rewrite:\\n\\n"
"def parse_total(row):\\n"
" return float(row['price']) * int(row['qty'])\\n"
),
},
],
max_tokens=2048,
stream=False,
)
print(response.choices[0].message.content)
'''

STEP_5 = '''stream = client.chat.completions.create(
model=os.environ.get("KIMI_CODING_MODEL", "kimi-k2.7-code"),
messages=[
{
"role": "system",
"content": "You are a coding assistant. Explain the plan before writing code.",
},
{
"role": "user",
"content": "Write a FastAPI endpoint that uploads a CSV file and validates required columns.",
},
],
max_tokens=4096,
stream=True,
)
for event in stream:
delta = event.choices[0].delta
if getattr(delta, "content", None):
print(delta.content, end="")
'''


def _indent_loop(code: str) -> str:
    """The guide's page lost the indentation of the for-loop body; restore exactly that, nothing else."""
    return code.replace("for event in stream:\ndelta", "for event in stream:\n    delta").replace(
        "\nif getattr(delta", "\n    if getattr(delta").replace('\nprint(delta.content, end="")',
                                                                '\n        print(delta.content, end="")')


def _run(code: str, tmp_path: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "guide.py"
    script.write_text(code)
    env = {**os.environ, "AI_GATEWAY_API_KEY": EMULATOR_KEY, "AI_GATEWAY_BASE_URL": base_url,
           "KIMI_CODING_MODEL": "kimi-k2.7-code"}
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_guide_steps_3_and_5_run_unchanged(emulator, tmp_path: Path) -> None:
    server = emulator()
    done = _run(STEP_3 + _indent_loop(STEP_5), tmp_path, server.base_url)
    assert done.returncode == 0, done.stderr
    assert "parse_total" in done.stdout and "KeyError" in done.stdout  # the review of Step 3
    assert "UploadFile" in done.stdout and "REQUIRED" in done.stdout  # the streamed FastAPI code of Step 5


def test_guide_code_with_temperature_gets_moonshots_400(emulator, tmp_path: Path) -> None:
    server = emulator()
    code = STEP_3.replace("max_tokens=2048,", "max_tokens=2048,\ntemperature=0.2,")
    done = _run(code, tmp_path, server.base_url)
    assert done.returncode != 0
    assert "BadRequestError" in done.stderr
    assert "invalid temperature: only 1 is allowed for this model" in done.stderr
    # and the body on the wire is exactly Moonshot's envelope
    body = {"model": "kimi-k2.7-code", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {EMULATOR_KEY}"})
    assert response.status_code == 400
    assert response.json() == {"error": {"message": "invalid temperature: only 1 is allowed for this model",
                                         "type": "invalid_request_error"}}


STEP_2_CURL = '''curl "$AI_GATEWAY_BASE_URL/chat/completions" \\
-H "Authorization: Bearer $AI_GATEWAY_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"model": "kimi-k2.7-code",
"messages": [
{
"role": "system",
"content": "You are a senior software engineer. Return concise code review notes and a safe patch plan."
},
{
"role": "user",
"content": "Review this Python function for edge cases and propose a typed rewrite:\\n\\n
def parse_total(row):\\n return float(row[\\"price\\"]) * int(row[\\"qty\\"])"
}
],
"max_tokens": 2048
}'
'''

STEP_4_NODE = '''import OpenAI from "openai";
const client = new OpenAI({
apiKey: process.env.AI_GATEWAY_API_KEY,
baseURL: process.env.AI_GATEWAY_BASE_URL,
});
const response = await client.chat.completions.create({
model: process.env.KIMI_CODING_MODEL || "kimi-k2.7-code",
messages: [
{
role: "system",
content:
"You are a senior software engineer. Return concise code review notes and a safe patch plan.",
},
{
role: "user",
content:
"Review this JavaScript function for edge cases and propose a safer rewrite:\\n\\nfunction total(row) { return Number(row.price) * Number(row.qty) }",
},
],
max_tokens: 2048,
});
console.log(response.choices[0].message.content);
'''


def _env(base_url: str) -> dict[str, str]:
    return {**os.environ, "AI_GATEWAY_API_KEY": EMULATOR_KEY, "AI_GATEWAY_BASE_URL": base_url,
            "KIMI_CODING_MODEL": "kimi-k2.7-code"}


def test_guide_step_2_curl_as_printed(emulator, tmp_path: Path):
    """The page's cURL breaks the JSON string across a line (a raw newline inside a string): the emulator answers
    what Moonshot's JSON parser would, a 400 for a body that is not valid JSON; with that one line joined it works."""
    server = emulator()
    printed = subprocess.run(["sh", "-c", STEP_2_CURL], env=_env(server.base_url), capture_output=True, text=True,
                             timeout=60)
    assert printed.returncode == 0 and '"invalid_request_error"' in printed.stdout
    assert "not valid JSON" in printed.stdout
    joined = STEP_2_CURL.replace("\\n\\n\ndef parse_total", "\\n\\ndef parse_total")
    assert joined != STEP_2_CURL
    done = subprocess.run(["sh", "-c", joined], env=_env(server.base_url), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert "parse_total" in answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["message"]["reasoning_content"]


def test_guide_step_4_node_runs_unchanged(emulator, tmp_path: Path, node_modules):
    server = emulator()
    script = tmp_path / "guide.mjs"
    script.write_text(STEP_4_NODE)
    (tmp_path / "node_modules").symlink_to(node_modules, target_is_directory=True)
    done = subprocess.run(["node", str(script)], env=_env(server.base_url), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Number(undefined)" in done.stdout  # the emulator's review of the JavaScript function
