"""The Kimi emulator: a Starlette app that enforces the contract, streams like Moonshot and misbehaves on request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..suites import task_in_text
from .answers import Answer, answer_for, text_of
from .contract import FIXED, ApiError, bad_request, estimate_tokens, validate_chat
from .faults import STREAM_ONLY, FaultPlan
from .files import FileStore
from .media import inspect_media
from .personalities import PERSONALITY, Personality
from .scripted import scripted_answer
from .settings import EmulatorSettings

MODELS: list[dict[str, Any]] = [
    {"id": "kimi-k2.7-code", "image": True, "video": True},
    {"id": "kimi-k2.7-code-highspeed", "image": True, "video": True},
    {"id": "kimi-k2.6", "image": True, "video": True},
    {"id": "kimi-k2.5", "image": True, "video": True},
    {"id": "kimi-k2-thinking", "image": False, "video": False},
]
PRICES = {"kimi-k2.7-code": (0.19, 0.95, 4.0), "kimi-k2.7-code-highspeed": (0.38, 1.9, 8.0)}
DEFAULT_BUDGET = 32768


class Emulator:
    """State shared by the emulator's handlers: settings, fault plan, prompt cache, uploaded files."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.personality: Personality = PERSONALITY[settings.personality]
        self.plan = FaultPlan(settings)
        self.files = FileStore(settings.file_max_bytes, settings.file_max_count, settings.file_max_total_bytes)
        self._cache: set[str] = set()
        self.requests_seen = 0

    # ---- helpers -------------------------------------------------------------------------------------------------
    def error(self, err: ApiError) -> JSONResponse:
        headers: dict[str, str] = {}
        if err.retry_after is not None:
            headers["retry-after"] = str(max(1, round(err.retry_after)))
            headers["retry-after-ms"] = str(int(err.retry_after * 1000))
        return JSONResponse(self.personality.error_body(err), status_code=err.status, headers=headers)

    def deny(self, request: Request) -> Response | None:
        """Moonshot's 401 unless the request carries the emulator's key."""
        if request.headers.get("authorization", "") == f"Bearer {self.settings.api_key}":
            return None
        return self.error(ApiError(401, "invalid_authentication_error", "Invalid Authentication"))

    def model_ids(self) -> list[str]:
        return [self.personality.model_prefix + m["id"] for m in MODELS]

    def bare_model(self, model: str) -> str | None:
        prefix = self.personality.model_prefix
        if model in self.model_ids():
            return model[len(prefix):]
        return None

    def cached_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Moonshot-style automatic prefix cache: a repeated leading system message is a cache hit."""
        if not messages or messages[0].get("role") != "system":
            return 0
        key = hashlib.sha256(json.dumps(messages[0], sort_keys=True, default=str).encode()).hexdigest()
        hit = key in self._cache
        self._cache.add(key)
        return estimate_tokens(messages[0].get("content")) if hit else 0

    def answer(self, body: dict[str, Any], notes: list[str]) -> Answer:
        """A scripted trajectory when the request is one of the shipped tasks with tools, else the generic answer."""
        messages = body.get("messages") or []
        if body.get("tools") and body.get("tool_choice", "auto") != "none":
            first_user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
            task = task_in_text(text_of(first_user.get("content"))) if first_user else None
            if task is not None:
                answer = scripted_answer(task, messages, self.settings.seed, self.settings.slip_rate)
                answer.reasoning = " ".join([answer.reasoning, *notes])
                return answer
        return answer_for(body, self.settings.seed, notes)

    # ---- endpoints -----------------------------------------------------------------------------------------------
    async def list_models(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        data = [
            {"id": self.personality.model_prefix + m["id"], "object": "model", "created": 1767225600,
             "owned_by": "moonshot", "context_length": 262144, "supports_image_in": m["image"],
             "supports_video_in": m["video"], "supports_reasoning": True}
            for m in MODELS
        ]
        return JSONResponse({"object": "list", "data": data})

    async def balance(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        return JSONResponse({"code": 0, "data": {"available_balance": 42.0, "voucher_balance": 0.0,
                                                 "cash_balance": 42.0}, "scode": "0x0", "status": True})

    async def estimate(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        body = await self._json(request)
        if isinstance(body, Response):
            return body
        return JSONResponse({"data": {"total_tokens": estimate_tokens(body.get("messages"))}})

    async def _json(self, request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        if len(raw) > self.settings.max_body_bytes:
            limit_mb = self.settings.max_body_bytes / (1024 * 1024)
            return self.error(bad_request(f"Invalid request: request body of {len(raw)} bytes exceeds the "
                                          f"{limit_mb:g} MB limit"))
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self.error(bad_request("Invalid request: the body is not valid JSON"))
        if not isinstance(body, dict):
            return self.error(bad_request("Invalid request: the body must be a JSON object"))
        return body

    async def chat(self, request: Request) -> Response:
        arrived = time.monotonic()  # injected latency counts from here, so the emulator's own work does not add to it
        self.requests_seen += 1
        if (denied := self.deny(request)) is not None:
            return denied
        body = await self._json(request)
        if isinstance(body, Response):
            return body
        stream = bool(body.get("stream"))
        fault = self.plan.draw()
        fault_error = self.plan.error_for(fault) if fault else None
        late_error = fault_error is not None and stream and self.personality.errors_in_stream and fault_error.status >= 500
        if fault_error is not None and not late_error:
            return self.error(fault_error)
        refused = self.plan.admit()
        if refused is not None:
            return self.error(refused)
        released = False
        try:
            model = str(body.get("model", ""))
            bare = self.bare_model(model)
            if bare is None:
                return self.error(ApiError(404, "resource_not_found_error",
                                           f"Not found the model {model} or Permission denied"))
            if not self.personality.enforce_fixed:
                body = {k: v for k, v in body.items() if k not in FIXED}
            try:
                seen = inspect_media(body, self.files)
                prompt_tokens = validate_chat(body, enforce_fixed=self.personality.enforce_fixed,
                                              reasoning_keys=self.personality.reasoning_keys(),
                                              media_tokens=sum(m.tokens for m in seen))
            except ApiError as err:
                return self.error(err)
            answer = self.answer(body, [m.note(i + 1) for i, m in enumerate(seen)])
            turn = Turn(self, body, bare, answer, prompt_tokens, arrived)
            if stream:
                released = True
                gen = turn.stream(late_error=fault_error if late_error else None,
                                  stream_fault=fault if fault in STREAM_ONLY else None)
                return StreamingResponse(gen, media_type="text/event-stream",
                                         headers={"cache-control": "no-cache"})
            if fault == "malformed":
                return Response(b'{"id": "chatcmpl-broken", "choices": [', media_type="application/json")
            await asyncio.sleep(max(0.0, turn.arrived + turn.total_delay_s() - time.monotonic()))
            return JSONResponse(turn.completion())
        finally:
            if not released:
                self.plan.release()

    async def upload_file(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        form = await request.form(max_part_size=self.files.max_file_bytes + 1)
        upload = form.get("file")
        purpose = str(form.get("purpose") or "")
        if upload is None or isinstance(upload, str):
            return self.error(bad_request("Invalid request: multipart field 'file' is required"))
        try:
            data = await upload.read()
            return JSONResponse(self.files.add(upload.filename or "upload", purpose, data))
        except ApiError as err:
            return self.error(err)

    async def files_list(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        return JSONResponse({"object": "list", "data": self.files.list()})

    async def file_item(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        file_id = request.path_params["file_id"]
        try:
            if request.method == "DELETE":
                return JSONResponse(self.files.delete(file_id))
            return JSONResponse(self.files.get(file_id))
        except ApiError as err:
            return self.error(err)


class Turn:
    """One chat completion being answered: the answer cut into pieces, the budget applied, usage that adds up."""

    def __init__(self, emu: Emulator, body: dict[str, Any], model: str, answer: Answer, prompt_tokens: int,
                 arrived: float) -> None:
        self.emu = emu
        self.body = body
        self.model = body.get("model", model)
        self.bare = model
        self.answer = answer
        self.arrived = arrived
        self.first_token_event: int | None = None
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        budget = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_BUDGET
        self.reasoning = answer.pieces(answer.reasoning)
        self.content = answer.pieces(answer.content)
        self.args = [answer.pieces(call.arguments) or [""] for call in answer.tool_calls]
        self.finish = "tool_calls" if answer.tool_calls else "stop"
        total = len(self.reasoning) + len(self.content) + sum(len(a) for a in self.args)
        if total > int(budget):
            self.reasoning = self.reasoning[: int(budget)]
            self.content = self.content[: max(0, int(budget) - len(self.reasoning))]
            self.args, self.answer.tool_calls = [], []
            self.finish = "length"
        self.prompt_tokens = prompt_tokens
        self.cached = emu.cached_tokens(body.get("messages") or [])

    def usage(self) -> dict[str, Any]:
        reasoning = len(self.reasoning)
        completion = reasoning + len(self.content) + sum(len(a) for a in self.args)
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        if self.cached:
            usage["cached_tokens"] = self.cached
        if self.emu.personality.usage_cost and self.bare in PRICES:
            hit, miss, out = PRICES[self.bare]
            usage["cost"] = round((self.cached * hit + (self.prompt_tokens - self.cached) * miss
                                   + completion * out) / 1e6, 8)
        return usage

    def total_delay_s(self) -> float:
        s = self.emu.settings
        pieces = len(self.reasoning) + len(self.content) + sum(len(a) for a in self.args)
        return (s.ttft_ms + s.itl_ms * max(0, pieces - 1)) / 1000.0

    def _tool_calls(self) -> list[dict[str, Any]]:
        return [{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for i, c in enumerate(self.answer.tool_calls)]

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if not self.emu.personality.strip_reasoning:
            message[self.emu.personality.reasoning_field] = "".join(self.reasoning)
        if self.answer.tool_calls:
            message["tool_calls"] = self._tool_calls()
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish}], "usage": self.usage()}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if usage:
            choice["usage"] = self.usage()
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice]}

    def _events(self) -> list[tuple[float, dict[str, Any] | str]]:
        """The stream as (delay before it in ms, event) pairs; an event is a chunk dict or a raw line."""
        s = self.emu.settings
        p = self.emu.personality
        events: list[tuple[float, dict[str, Any] | str]] = [(0.0, self._chunk({"role": "assistant", "content": ""}))]
        first = True
        pending = 0.0  # time spent on pieces a lossy relay swallowed

        def token(delta: dict[str, Any] | None) -> None:
            nonlocal first, pending
            delay = (s.ttft_ms if first else s.itl_ms) + pending
            first = False
            if delta is None:
                pending = delay
                return
            if self.first_token_event is None:
                self.first_token_event = len(events)
            events.append((delay, self._chunk(delta)))
            pending = 0.0

        if not p.strip_reasoning:
            events.append((0.0, self._chunk({p.reasoning_field: ""})))
        for piece in self.reasoning:
            token(None if p.strip_reasoning else {p.reasoning_field: piece})
        if self.reasoning and not p.strip_reasoning:
            events.append((0.0, self._chunk({p.reasoning_field: ""})))
        for piece in self.content:
            token({"content": piece})
        for i, (call, pieces) in enumerate(zip(self.answer.tool_calls, self.args, strict=True)):
            token({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                   "function": {"name": call.name, "arguments": ""}}]})
            for piece in pieces:
                token({"tool_calls": [{"function": {"arguments": piece}}]})
        events.append((0.0, self._chunk({}, self.finish, usage=True)))
        if (self.body.get("stream_options") or {}).get("include_usage"):
            events.append((0.0, {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                 "model": self.model, "choices": [], "usage": self.usage()}))
        return events

    async def stream(self, late_error: ApiError | None, stream_fault: str | None) -> AsyncIterator[bytes]:
        p = self.emu.personality
        prefix = "data:" if p.tight_data_prefix else "data: "
        try:
            if p.keepalive_comment:
                yield f"{p.keepalive_comment}\n\n".encode()
            events = self._events()
            if late_error is not None:
                events = [events[0], (self.emu.settings.ttft_ms, {**p.error_body(late_error)})]
            cut_at = len(events) // 2 if stream_fault in ("cut", "malformed") else None
            for i, (delay_ms, event) in enumerate(events):
                if cut_at is not None and i == cut_at:
                    if stream_fault == "malformed":
                        yield f'{prefix}{{"choices": [{{"delta": {{"content": "tru\n\n'.encode()
                        continue
                    return
                if i == self.first_token_event:
                    delay_ms = (self.arrived - time.monotonic()) * 1000.0 + delay_ms
                if delay_ms > 0:
                    await asyncio.sleep(delay_ms / 1000.0)
                yield f"{prefix}{json.dumps(event)}\n\n".encode()
            if late_error is None:
                yield f"{prefix}[DONE]\n\n".encode()
        finally:
            self.emu.plan.release()


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return PlainTextResponse("404 page not found" if status == 404 else "method not allowed", status_code=status)


def create_app(settings: EmulatorSettings | None = None) -> Starlette:
    """Build the emulator app; `app.state.emulator` exposes its state to in-process tests."""
    emu = Emulator(settings or EmulatorSettings())
    routes = [
        Route("/v1/models", emu.list_models, methods=["GET"]),
        Route("/v1/chat/completions", emu.chat, methods=["POST"]),
        Route("/v1/files", emu.upload_file, methods=["POST"]),
        Route("/v1/files", emu.files_list, methods=["GET"]),
        Route("/v1/files/{file_id}", emu.file_item, methods=["GET", "DELETE"]),
        Route("/v1/tokenizers/estimate-token-count", emu.estimate, methods=["POST"]),
        Route("/v1/users/me/balance", emu.balance, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found})
    app.state.emulator = emu
    app.state.request_id = uuid.uuid4().hex
    return app
