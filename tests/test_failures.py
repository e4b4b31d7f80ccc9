"""The cause of a failure is read from the body as well as the status: each gateway's phrasing, matched by a case."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import openai
import pytest

from k2probe.core.failures import from_exception

LITELLM_INVALID_MODEL = {"error": {"message": "/chat/completions: Invalid model name passed in model=kimi-x. Call "
                                              "`/v1/models` to view available models for your key.",
                                   "type": "None", "param": "None", "code": "400"}}
CASES: list[tuple[str, int, Any, str]] = [
    # (id, status, body, cause)
    ("moonshot-unknown-model", 404, {"error": {"type": "resource_not_found_error",
                                               "message": "Not found the model kimi-x or Permission denied"}},
     "unknown_model"),
    ("moonshot-bad-key", 401, {"error": {"type": "invalid_authentication_error", "message": "Invalid Authentication"}},
     "invalid_key"),
    ("moonshot-quota", 429, {"error": {"type": "exceeded_current_quota_error",
                                       "message": "Your account org-1 is suspended due to insufficient balance"}},
     "quota_exhausted"),
    ("moonshot-overloaded", 429, {"error": {"type": "engine_overloaded_error",
                                            "message": "The engine is currently overloaded, please try again later"}},
     "rate_limited"),
    ("moonshot-fixed-param", 400, {"error": {"type": "invalid_request_error",
                                             "message": "invalid temperature: only 1 is allowed for this model"}},
     "unsupported_param"),
    ("moonshot-context", 400, {"error": {"type": "invalid_request_error",
                                         "message": "Your request exceeded model token limit : 262144"}},
     "unclassified"),
    ("litellm-invalid-model", 400, LITELLM_INVALID_MODEL, "unknown_model"),
    ("litellm-no-db", 400, {"error": {"message": "No connected db.", "type": "no_db_connection", "param": "None",
                                      "code": "400"}}, "invalid_key"),
    ("litellm-bad-token", 401, {"error": {"message": "Authentication Error, Invalid proxy server token passed. "
                                                     "Received API Key = sk-...8aSP", "type": "token_not_found_in_db",
                                          "param": "key", "code": "401"}}, "invalid_key"),
    ("litellm-thinking", 400, {"error": {"message": "litellm.UnsupportedParamsError: moonshot does not support "
                                                    "parameters: ['thinking'], for model=kimi-k2.7-code. To drop these, "
                                                    "set `litellm.drop_params=True`", "type": "None", "code": "400"}},
     "gateway_rejected_param"),
    ("litellm-wrapped-quota", 429, {"error": {"message": "litellm.RateLimitError: MoonshotException - Your account "
                                                         "org-1 is suspended due to insufficient balance",
                                              "type": "None", "code": "429"}}, "quota_exhausted"),
    ("litellm-wrapped-param", 400, {"error": {"message": "litellm.BadRequestError: MoonshotException - invalid top_p: "
                                                         "only 0.95 is allowed for this model", "type": "None",
                                              "code": "400"}}, "unsupported_param"),
    ("openrouter-raw-unknown-model", 400, {"error": {"code": 400, "message": "Provider returned error", "metadata": {
        "raw": json.dumps({"error": {"type": "resource_not_found_error",
                                     "message": "Not found the model kimi-x or Permission denied"}}),
        "provider_name": "Moonshot AI"}}}, "unknown_model"),
    ("openrouter-invalid-model-id", 400, {"error": {"code": 400, "message": "kimi-x is not a valid model ID"}},
     "unknown_model"),
    ("openrouter-user-not-found", 401, {"error": {"code": 401, "message": "User not found."}}, "invalid_key"),
    ("openrouter-credits", 402, {"error": {"code": 402, "message": "Insufficient credits. Add more using "
                                                                 "https://openrouter.ai/credits"}}, "quota_exhausted"),
    ("openrouter-no-provider", 503, {"error": {"code": 503, "message": "No available model provider that meets your "
                                                                     "routing requirements"}}, "server_error"),
    ("openrouter-tools", 404, {"error": {"code": 404, "message": "No endpoints found that support tool use."}},
     "unsupported_param"),
    ("wisgate-bad-key", 401, {"error": {"message": "Invalid API key", "type": "authentication_error",
                                        "code": "invalid_api_key"}}, "invalid_key"),
    ("wisgate-bad-request", 400, {"error": {"message": "Invalid request format", "type": "invalid_request_error",
                                            "param": "messages", "code": "invalid_format"}}, "unclassified"),
    ("openai-model-missing", 404, {"error": {"message": "The model `kimi-x` does not exist or you do not have access "
                                                        "to it.", "type": "invalid_request_error",
                                             "code": "model_not_found"}}, "unknown_model"),
]


@pytest.mark.parametrize(("status", "body", "cause"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_cause_is_read_from_the_body(status, body, cause):
    response = httpx2.Response(status, request=httpx2.Request("POST", "http://gw/v1/chat/completions"), json=body)
    failure = from_exception(openai.APIStatusError("error", response=response, body=body))
    assert failure.cause == cause, failure
    if cause == "quota_exhausted":
        assert not failure.retryable  # a quota is not waited out, whatever the status says


class _Gateway(BaseHTTPRequestHandler):
    """A gateway that lists an alias model and answers every chat request with a canned error."""

    status, body = 400, LITELLM_INVALID_MODEL

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "kimi-moonshot", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(type(self).status, type(self).body)


@pytest.mark.parametrize(("status", "body", "diagnosis"), [
    (400, LITELLM_INVALID_MODEL, "unknown_model"),
    (400, {"error": {"message": "No connected db.", "type": "no_db_connection", "code": "400"}}, "invalid_key"),
    (400, {"error": {"message": "something the server alone understands", "type": "None", "code": "400"}},
     "unclassified"),
], ids=["litellm-alias-unknown", "litellm-wrong-key", "unclassified"])
def test_doctor_through_a_gateway_says_the_real_cause(cli, status, body, diagnosis):
    handler = type("Handler", (_Gateway,), {"status": status, "body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        result = cli("doctor", "--json", env={"AI_GATEWAY_API_KEY": "sk-gateway-key-000000000000",
                                              "AI_GATEWAY_BASE_URL": f"http://127.0.0.1:{server.server_port}/v1",
                                              "KIMI_CODING_MODEL": "kimi-x"})
    finally:
        server.shutdown()
    assert result.code == 1, result.stderr
    data = result.json()
    assert data["diagnosis"] == diagnosis, data
    if diagnosis == "unclassified":  # the server's words, not a guess
        assert any("something the server alone understands" in c["detail"] for c in data["checks"])
