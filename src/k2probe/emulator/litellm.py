"""The `litellm` personality: what a LiteLLM proxy's `moonshot/` provider does to requests and answers in front of
Moonshot (observed with LiteLLM 1.108.7, docs/kimi-contract.md §8), reproduced so tests of `audit` run in milliseconds.

Requests: `thinking` refused by the proxy itself; `temperature` popped (even 1); `tool_choice: "required"` replaced by
an extra user message; `reasoning_content: " "` injected into assistant tool-call turns that lack it; text-only list
content flattened; `max_completion_tokens` renamed. Answers: usage gains `cost`; a stream's usage is stripped unless
the client asked for it, and then it is the proxy's own estimate. Errors: the upstream's wrapped, an unknown alias and a
wrong key answered with the proxy's own 400s."""

from __future__ import annotations

from typing import Any

from k2probe.emulator.contract import ApiError

REQUIRED_NUDGE = "Please select a tool to handle the current issue."


class ProxyError(ApiError):
    """An error in LiteLLM's own envelope (`type` the string "None", `code` the status as a string)."""

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": "None", "param": "None", "code": str(self.status)}}


def wrap(error: ApiError) -> ProxyError:
    """An upstream (Moonshot) error as the proxy passes it on."""
    if isinstance(error, ProxyError):
        return error
    kind = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError",
            429: "RateLimitError"}.get(error.status, "APIError")
    return ProxyError(error.status, error.type, f"litellm.{kind}: MoonshotException - {error.message}",
                      error.retry_after)


def invalid_model(model: str) -> ProxyError:
    return ProxyError(400, "None", f"/chat/completions: Invalid model name passed in model={model}. Call `/v1/models` "
                                   "to view available models for your key.")


def no_db() -> ProxyError:
    return ProxyError(400, "None", "No connected db.")


def rewrite_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The body the proxy sends upstream; raises ProxyError where the proxy refuses it itself."""
    if "thinking" in body:
        raise ProxyError(400, "None", f"litellm.UnsupportedParamsError: moonshot does not support parameters: "
                                      f"['thinking'], for model={model}. To drop these, set `litellm.drop_params=True` "
                                      "or for proxy: `litellm_settings: drop_params: true`. If you want to use these "
                                      "params dynamically send allowed_openai_params=['thinking'] in your request.")
    out = {k: v for k, v in body.items() if k != "temperature"}
    if "max_completion_tokens" in out:
        out["max_tokens"] = out.pop("max_completion_tokens")
    messages = [dict(m) if isinstance(m, dict) else m for m in out.get("messages") or []]
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list) and content and all(isinstance(p, dict) and p.get("type") == "text"
                                                         for p in content):
            message["content"] = "".join(str(p.get("text", "")) for p in content)
        if message.get("role") == "assistant" and message.get("tool_calls") and not message.get("reasoning_content"):
            message["reasoning_content"] = " "
    if out.get("tool_choice") == "required":
        del out["tool_choice"]
        messages.append({"role": "user", "content": REQUIRED_NUDGE})
    out["messages"] = messages
    out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True} if out.get("stream") else None
    if out["stream_options"] is None:
        del out["stream_options"]
    return out


def estimated_usage(body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
    """The proxy's own usage estimate, sent instead of the upstream's when the upstream put it in choices[0]."""
    import json

    prompt = max(1, len(json.dumps(body.get("messages") or [], ensure_ascii=False)) // 3)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}
