"""The bad-input corpus, table-driven: each case ends in one line that says what is wrong and how to fix it, with exit 2
(or 1 where the thing tested failed), in bounded time: no traceback, no "internal error", no hang, no bad value accepted."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

KEY = "sk-corpus-key-000000000000"


def _png_declaring(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


def _setup(workdir: Path, name: str) -> dict[str, str]:
    """Files a case needs; returns extra environment."""
    if name == "home_is_a_file":
        (workdir / "afile").write_text("x")
        return {"K2PROBE_HOME": str(workdir / "afile")}
    if name.startswith("bomb"):
        width, height = (int(n) for n in name.split(":")[1:]) if ":" in name else (30000, 30000)
        _png_declaring(workdir / "bomb.png", width, height)
    if name == "fifo":
        import os

        os.mkfifo(workdir / "fifo.png")
    if name == "garbage_uploads":
        (workdir / "home").mkdir(exist_ok=True)
        (workdir / "home" / "uploads.json").write_text("[1, 2")
    if name == "text_png":
        (workdir / "t.png").write_text("hello\n")
    if name == "empty_png":
        (workdir / "e.png").write_bytes(b"")
    if name == "samples_garbage":
        (workdir / "s.jsonl").write_text("not json\n")
    if name == "samples_unknown":
        (workdir / "s.jsonl").write_text('{"task_id": "Nope/1", "completion": "    pass"}\n')
    if name.startswith("user_suite"):
        suite = workdir / "mysuite"
        suite.mkdir()
        (suite / "suite.toml").write_text("name = [" if name == "user_suite_badtoml" else 'name = "mine"\n')
        if name == "user_suite_norepo":
            (suite / "t1").mkdir()
            (suite / "t1" / "task.toml").write_text('title = "t"\nstatement = "s"\ntest_cmd = "true"\n')
    if name.startswith("toml:"):
        (workdir / "k2probe.toml").write_text(name[5:].replace(";", "\n"))
    return {}


ROUTE = {"AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": "http://127.0.0.1:9/v1"}
CASES: list[tuple[str, list[str], dict[str, str], str, int, str]] = [
    # (id, args, env, setup, exit code, words in the line)
    ("param-messages", ["doctor", "--param", "messages=5"], {}, "", 2, "set by k2probe itself"),
    ("param-model", ["chat", "hi", "--param", "model=x"], {}, "", 2, "set by k2probe itself"),
    ("param-inf", ["chat", "hi", "--param", "max_tokens=1e999"], {}, "", 2, "not a finite number"),
    ("param-nan", ["chat", "hi", "--param", "temperature=NaN"], {}, "", 2, "not a finite number"),
    ("param-deep", ["chat", "hi", "--param", "x=" + "[" * 3000 + "]" * 3000], {}, "", 2, "nested too deeply"),
    ("param-typo", ["doctor", "--param", "temprature=0.2"], {}, "", 2, "did you mean 'temperature'"),
    ("port-70000", ["emulator", "--port", "70000"], {}, "", 2, "--port"),
    ("rpm-negative", ["emulator", "--rpm", "-1"], {}, "", 2, "--rpm"),
    ("ttft-nan", ["emulator", "--ttft-ms", "nan"], {}, "", 2, "--ttft-ms"),
    ("slip-rate-2", ["emulator", "--slip-rate", "2"], {}, "", 2, "--slip-rate"),
    ("home-is-a-file", ["chat", "hi"], {}, "home_is_a_file", 2, "is not a folder"),
    ("url-100k", ["chat", "hi"], {**ROUTE, "AI_GATEWAY_BASE_URL": "http://" + "a" * 100_000 + "/v1"}, "", 2,
     "characters long"),
    ("url-crlf", ["chat", "hi"], {**ROUTE, "AI_GATEWAY_BASE_URL": "http://127.0.0.1:9/v1\r\nX: y"}, "", 2,
     "control characters"),
    ("url-port", ["smoke"], {**ROUTE, "AI_GATEWAY_BASE_URL": "http://127.0.0.1:99999/v1"}, "", 2, "Port out of range"),
    ("url-not-a-url", ["chat", "hi"], {**ROUTE, "AI_GATEWAY_BASE_URL": "not a url"}, "", 2, "control characters"),
    ("url-ftp", ["chat", "hi"], {**ROUTE, "AI_GATEWAY_BASE_URL": "ftp://host/v1"}, "", 2, "not an http(s) URL"),
    ("key-non-ascii", ["chat", "hi"], {**ROUTE, "AI_GATEWAY_API_KEY": "sk-ключ-ключ-ключ"}, "", 2, "non-ASCII"),
    ("image-bomb", ["chat", "hi", "--image", "bomb.png"], {}, "bomb", 2, "decoded safely"),
    ("image-144-mpx", ["chat", "hi", "--image", "bomb.png", "--fit"], {}, "bomb:12000:12000", 2, "(144 Mpx)"),
    ("image-bomb-fit", ["chat", "hi", "--image", "bomb.png", "--fit"], {}, "bomb", 2, "decoded safely"),
    ("image-dev-zero", ["chat", "hi", "--image", "/dev/zero"], {}, "", 2, "not a regular file"),
    ("image-fifo", ["chat", "hi", "--image", "fifo.png"], {}, "fifo", 2, "not a regular file"),
    ("image-missing", ["chat", "hi", "--image", "nope.png"], {}, "", 2, "cannot read"),
    ("image-folder", ["chat", "hi", "--image", "."], {}, "", 2, "not a regular file"),
    ("max-tokens-neg", ["chat", "hi", "--max-tokens", "-5"], {}, "", 2, "--max-tokens"),
    ("max-tokens-zero", ["chat", "hi", "--max-tokens", "0"], {}, "", 2, "--max-tokens"),
    ("runs-limit-huge", ["runs", "--limit", "100000000000000000000"], {}, "", 2, "--limit"),
    ("runs-limit-zero", ["runs", "--limit", "0"], {}, "", 2, "--limit"),
    ("snippet-out-missing", ["snippet", "--out", "missing/dir/x.py"], {}, "", 2, ""),
    ("test-timeout-nan", ["agent", "--task", "parse-total", "--test-timeout", "nan"], {}, "", 2, "--test-timeout"),
    ("test-timeout-inf", ["agent", "--task", "parse-total", "--test-timeout", "inf"], {}, "", 2, "--test-timeout"),
    ("max-steps-neg", ["agent", "--task", "parse-total", "--max-steps", "-1"], {}, "", 2, "--max-steps"),
    ("timeout-zero", ["agent", "--task", "parse-total", "--timeout", "0"], {}, "", 2, "--timeout"),
    ("max-cost-neg", ["agent", "--task", "parse-total", "--max-cost", "-1"], {}, "", 2, "--max-cost"),
    ("max-cost-zero", ["agent", "--task", "parse-total", "--max-cost", "0"], {}, "", 2, "--max-cost"),
    ("python-missing", ["agent", "--task", "parse-total", "--python", "/no/such/python"], {}, "", 2, "--python"),
    ("sandbox-unknown", ["agent", "--task", "parse-total", "--sandbox", "docker"], {}, "", 2, "unknown --sandbox"),
    ("chat-timeout-0", ["chat", "hi", "--timeout", "0"], {}, "", 2, "--timeout"),
    ("unknown-command", ["chatt", "hi"], {}, "", 2, "No such command"),
    ("unknown-option", ["chat", "hi", "--strem"], {}, "", 2, "No such option"),
    ("review-no-verdict", ["review", "abc", "--repair-minutes", "nan"], {}, "", 2, "--repair-minutes"),
    ("garbage-uploads", ["chat", "hi", "--image", "/dev/zero", "--upload"], {}, "garbage_uploads", 2,
     "not a regular file"),
    ("toml-typo", ["routes"], {}, "toml:[routes.a];bas_url = 'http://x/v1'", 2, "did you mean 'base_url'"),
    ("toml-param-typo", ["routes"], {}, "toml:[routes.a];base_url = 'http://x/v1';params = { temprature = 0.2 }", 2,
     "did you mean 'temperature'"),
    ("toml-personality", ["routes"], {}, "toml:[routes.a];emulator = true;personality = 'nope'", 2,
     "unknown personality"),
    ("toml-price-neg", ["routes"], {},
     "toml:[routes.a];base_url = 'http://x/v1';price = { cache_miss_input = -1, output = 4 }", 2,
     "greater than or equal to 0"),
    ("toml-price-inf", ["routes"], {},
     "toml:[routes.a];base_url = 'http://x/v1';price = { cache_miss_input = 1, output = inf }", 2, "price.output"),
    ("toml-header", ["routes"], {}, "toml:[routes.a];base_url = 'http://x/v1';headers = { 'X-Team' = 'ü' }", 2,
     "non-ASCII"),
    ("empty-prompt", ["chat", "  "], {}, "", 2, "the prompt is empty"),
    ("video-given-a-png", ["chat", "hi", "--video", "bomb.png"], {}, "bomb:10:10", 2, "not a video"),
    ("text-as-png", ["chat", "hi", "--image", "t.png"], {}, "text_png", 2, "is text, not an image"),
    ("empty-png", ["chat", "hi", "--image", "e.png"], {}, "empty_png", 2, "empty file"),
    ("show-unknown-run", ["show", "zzzz"], {}, "", 2, "'zzzz' is not a run id"),
    ("review-unknown-run", ["review", "zzzz", "--accept"], {}, "", 2, "'zzzz' is not a run id"),
    ("snippet-lang", ["snippet", "--lang", "rust"], {}, "", 2, "unknown language 'rust'"),
    ("route-unknown", ["chat", "hi", "--route", "nope"], {}, "", 2, "unknown route 'nope'"),
    ("fault-kind", ["emulator", "--fault", "nope=0.5"], {}, "", 2, "unknown fault kind"),
    ("fault-rate", ["emulator", "--fault", "rate_limit=2"], {}, "", 2, "between 0 and 1"),
    ("personality-cli", ["emulator", "--personality", "nope"], {}, "", 2, "unknown personality"),
    ("repo-is-a-file", ["agent", "x", "--repo", "/etc/passwd"], {}, "", 2, "is not a folder"),
    ("task-unknown", ["agent", "--task", "nope"], {}, "", 2, "unknown task 'nope'"),
    ("suite-unknown", ["suite", "check", "nope"], {}, "", 2, "unknown suite 'nope'"),
    ("param-no-name", ["chat", "hi", "--param", "=1"], {}, "", 2, "bad --param"),
    ("toml-syntax", ["routes"], {}, "toml:[routes", 2, "not valid TOML"),
    ("toml-type", ["routes"], {}, "toml:[routes.a];base_url = 5", 2, "valid string"),
    ("toml-default-route", ["chat", "hi"], {}, "toml:default_route = 'zz'", 2, "unknown route 'zz'"),
    ("db-unreachable", ["runs"], {"K2PROBE_DB_URL": "postgresql+psycopg://u:pw-canary-77@127.0.0.1:1/db"}, "", 2,
     "cannot open the store"),
    ("db-dialect", ["runs"], {"K2PROBE_DB_URL": "nosuch://x"}, "", 2, "cannot open the store"),
    ("max-tokens-text", ["chat", "hi", "--max-tokens", "abc"], {}, "", 2, "--max-tokens"),
    ("env-timeout-text", ["chat", "hi"], {"K2PROBE_TIMEOUT": "abc"}, "", 2, "K2PROBE_TIMEOUT"),
    ("env-json-text", ["routes"], {"K2PROBE_JSON": "maybe"}, "", 2, "K2PROBE_JSON"),
    ("python-a-folder", ["agent", "--task", "parse-total", "--python", "/usr"], {}, "", 2, "--python"),
    ("image-huge-declared", ["chat", "hi", "--image", "bomb.png"], {}, "bomb:65535:65535", 2, "decoded safely"),
    ("doctor-not-a-url", ["doctor"], {**ROUTE, "AI_GATEWAY_BASE_URL": "not a url"}, "", 1, ""),
    ("doctor-no-key", ["doctor"], {"AI_GATEWAY_BASE_URL": "http://127.0.0.1:9/v1"}, "", 1, ""),
    ("chat-no-key", ["chat", "hi"], {"AI_GATEWAY_BASE_URL": "http://127.0.0.1:9/v1"}, "", 2, "no API key"),
    ("toml-fallback-unknown", ["routes"], {}, "toml:[routes.a];base_url = 'http://x/v1';fallback = ['zz']", 2,
     "falls back to 'zz'"),
    ("toml-fallback-self", ["routes"], {}, "toml:[routes.a];base_url = 'http://x/v1';fallback = ['a']", 2,
     "names itself"),
    ("eval-no-suite", ["eval"], {}, "", 2, "give a SUITE"),
    ("eval-unknown-suite", ["eval", "nosuch"], {}, "", 2, "unknown suite 'nosuch'"),
    ("eval-epochs-0", ["eval", "humaneval", "--epochs", "0"], {}, "", 2, "--epochs"),
    ("eval-epochs-text", ["eval", "humaneval", "--epochs", "x"], {}, "", 2, "--epochs"),
    ("eval-concurrency-0", ["eval", "humaneval", "--concurrency", "0"], {}, "", 2, "--concurrency"),
    ("eval-concurrency-huge", ["eval", "humaneval", "--concurrency", "100000"], {}, "", 2, "--concurrency"),
    ("eval-limit-0", ["eval", "humaneval", "--limit", "0"], {}, "", 2, "--limit"),
    ("eval-limit-negative", ["eval", "humaneval", "--limit", "-3"], {}, "", 2, "--limit"),
    ("eval-tasks-unknown", ["eval", "humaneval", "--tasks", "HumanEval/999"], {}, "", 2, "unknown task(s)"),
    ("eval-tasks-empty", ["eval", "humaneval", "--tasks", ","], {}, "", 2, "names no task"),
    ("eval-samples-missing", ["eval", "humaneval", "--samples", "nope.jsonl"], {}, "", 2, "not a readable file"),
    ("eval-samples-folder", ["eval", "humaneval", "--samples", "/tmp"], {}, "", 2, "not a readable file"),
    ("eval-samples-garbage", ["eval", "humaneval", "--samples", "s.jsonl"], {}, "samples_garbage", 2, "not JSON"),
    ("eval-samples-other-suite", ["eval", "basic", "--samples", "s.jsonl"], {}, "samples_unknown", 2,
     "HumanEval problems"),
    ("eval-samples-unknown-task", ["eval", "humaneval", "--samples", "s.jsonl"], {}, "samples_unknown", 2,
     "1 task id(s) not in suite humaneval: 'Nope/1'"),
    ("eval-fail-under-unknown", ["eval", "humaneval", "--fail-under", "speed=3"], {}, "", 2, "unknown metric"),
    ("eval-fail-under-range", ["eval", "humaneval", "--fail-under", "accepted_rate=2"], {}, "", 2, "between 0 and 1"),
    ("eval-fail-under-nan", ["eval", "humaneval", "--fail-under", "accepted_rate=nan"], {}, "", 2, "between 0 and 1"),
    ("eval-fail-under-bare", ["eval", "humaneval", "--fail-under", "accepted_rate"], {}, "", 2, "between 0 and 1"),
    ("eval-junit-folder", ["eval", "humaneval", "--junit", "/nonexistent/x.xml"], {}, "", 2, "does not exist"),
    ("eval-html-folder", ["eval", "humaneval", "--html", "/nonexistent/x.html"], {}, "", 2, "does not exist"),
    ("eval-resume-unknown", ["eval", "--resume", "ffffffff"], {}, "", 2, "no run with id starting"),
    ("eval-sandbox-unknown", ["eval", "humaneval", "--sandbox", "nope"], {}, "", 2, "--sandbox"),
    ("eval-max-tokens-0", ["eval", "humaneval", "--max-tokens", "0"], {}, "", 2, "--max-tokens"),
    ("eval-route-unknown", ["eval", "humaneval", "--route", "nope"], {}, "", 2, "unknown route 'nope'"),
    ("eval-user-suite-empty", ["eval", "mysuite"], {}, "user_suite_empty", 2, "no task folders"),
    ("eval-user-suite-toml", ["eval", "mysuite"], {}, "user_suite_badtoml", 2, "suite.toml"),
    ("suite-user-no-repo", ["suite", "check", "mysuite"], {}, "user_suite_norepo", 2, "no repo/ folder"),
    ("report-unknown-run", ["report", "ffffffff"], {}, "", 2, "no run with id starting"),
    ("report-html-folder", ["report", "ffffffff", "--html", "/nonexistent/r.html"], {}, "", 2, "does not exist"),
    ("report-no-run", ["report"], {}, "", 2, "RUN"),
    ("show-limit-negative", ["show", "ffffffff", "--limit", "-1"], {}, "", 2, "--limit"),
    ("show-offset-text", ["show", "ffffffff", "--offset", "x"], {}, "", 2, "--offset"),
    ("show-unknown", ["show", "ffffffff"], {}, "", 2, "no run with id starting"),
    ("review-unknown-run", ["review", "ffffffff", "--accept", "--sample", "HumanEval/1"], {}, "", 2, "no run"),
    ("review-repair-negative", ["review", "ffffffff", "--accept", "--repair-minutes", "-1"], {}, "", 2,
     "--repair-minutes"),
    ("review-repair-inf", ["review", "ffffffff", "--accept", "--repair-minutes", "inf"], {}, "", 2,
     "--repair-minutes"),
    ("emulator-wrong-rate", ["emulator", "--wrong-rate", "2"], {}, "", 2, "--wrong-rate"),
    ("emulator-wrong-rate-nan", ["emulator", "--wrong-rate", "nan"], {}, "", 2, "--wrong-rate"),
    ("emulator-port-text", ["emulator", "--port", "http"], {}, "", 2, "--port"),
    ("runs-limit-0", ["runs", "--limit", "0"], {}, "", 2, "--limit"),
    ("agent-max-steps-text", ["agent", "--task", "slugify", "--max-steps", "many"], {}, "", 2, "--max-steps"),
    ("eval-unknown-option", ["eval", "humaneval", "--epoch", "3"], {}, "", 2, "--epoch"),
    ("eval-extra-argument", ["eval", "humaneval", "basic"], {}, "", 2, "unexpected extra argument"),
]


# Cases also run as a real `python -m k2probe` process started afresh (cli_exec): the entry point as installed (argv,
# exit code, streams flushed at interpreter exit), a usage error, a config error, a store error with a password, a home
# that is not a folder, and the inputs where a process differs from a thread: a FIFO (a blocking open could not be
# stopped in-process) and nesting 3000 deep (the main thread's C stack, not a worker thread's).
IN_A_REAL_PROCESS = ("unknown-command", "unknown-option", "toml-syntax", "chat-no-key", "db-unreachable",
                     "home-is-a-file", "image-fifo", "param-deep")


def _check_one_line(cli, workdir, args, env, setup, code, words):
    extra = _setup(workdir, setup)
    started = time.monotonic()
    result = cli(*args, env={**env, **extra}, timeout=60)
    elapsed = time.monotonic() - started
    text = result.stdout + result.stderr
    assert result.code == code, (result.code, result.stderr[-500:])
    assert "Traceback" not in text and "internal error" not in text
    assert elapsed < 30
    if code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("k2probe: "), result.stderr
        assert words in lines[0], lines[0]
    assert "pw-canary-77" not in text


@pytest.mark.parametrize(("args", "env", "setup", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line(cli_in_process, workdir, args, env, setup, code, words):
    _check_one_line(cli_in_process, workdir, args, env, setup, code, words)


@pytest.mark.parametrize(("args", "env", "setup", "code", "words"), [c[1:] for c in CASES if c[0] in IN_A_REAL_PROCESS],
                         ids=[c[0] for c in CASES if c[0] in IN_A_REAL_PROCESS])
def test_bad_input_gets_one_line_from_a_real_process(cli_exec, workdir, args, env, setup, code, words):
    _check_one_line(cli_exec, workdir, args, env, setup, code, words)


class _Answers(BaseHTTPRequestHandler):
    """429 with an odd Retry-After for the first requests, then a valid completion."""

    retry_after = "soon"
    seen = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        type(self).seen += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if type(self).seen <= 2:
            body = b'{"error": {"type": "engine_overloaded_error", "message": "busy"}}'
            self.send_response(429)
            self.send_header("Retry-After", type(self).retry_after)
        else:
            body = (b'{"id": "x", "object": "chat.completion", "created": 0, "model": "kimi-k2.7-code", "choices": '
                    b'[{"index": 0, "message": {"role": "assistant", "content": "ok", "reasoning_content": "r"}, '
                    b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}')
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("value", ["soon", "nan", "-5", "inf", "1e999", "Wed, 21 Oct 2015 07:28:00 GMT", "0.01"])
def test_any_retry_after_gives_a_bounded_delay(cli_in_process, value):
    handler = type("Handler", (_Answers,), {"retry_after": value, "seen": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        started = time.monotonic()
        result = cli_in_process("chat", "hi", "--json", env={
            "AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{server.server_port}/v1"})
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.code == 0 and result.json()["answer"] == "ok" and result.json()["retries"] == 2, result.stderr
    assert elapsed < 20


def test_a_server_that_never_answers_is_bounded_by_timeout(cli, workdir):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts the connection; nobody ever reads or answers
    try:
        env = {"AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/v1"}
        for args in (["chat", "hi", "--timeout", "3"], ["chat", "hi", "--stream", "--timeout", "3"],
                     ["smoke", "--timeout", "3"]):
            started = time.monotonic()
            result = cli(*args, env=env)
            assert time.monotonic() - started < 15
            assert result.code == 1 and "did not finish within --timeout 3 s" in result.stderr, result.stderr
    finally:
        silent.close()
    runs = cli("runs", "--json").json()["runs"]
    assert len(runs) == 3  # nothing already recorded is lost: each command's run is there
