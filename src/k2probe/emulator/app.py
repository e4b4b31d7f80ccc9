"""The Kimi emulator: a Starlette app that enforces the contract, streams like Moonshot and misbehaves on request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from k2probe.core.stamps import STAMP_HEADER
from k2probe.emulator import litellm
from k2probe.emulator.answers import Answer, ToolCall, answer_for
from k2probe.emulator.contract import FIXED, ApiError, bad_request, estimate_tokens, validate_chat, violations
from k2probe.emulator.faults import STREAM_ONLY, FaultPlan
from k2probe.emulator.files import FileStore
from k2probe.emulator.media import inspect_media
from k2probe.emulator.personalities import PERSONALITY, Personality
from k2probe.emulator.protocol import ARRIVED
from k2probe.emulator.schema import check_shape
from k2probe.emulator.settings import EmulatorSettings
from k2probe.emulator.turn import Turn
from k2probe.eval.suite import PlayRequest, play

MODELS: list[dict[str, Any]] = [
    {"id": "kimi-k2.7-code", "image": True, "video": True},
    {"id": "kimi-k2.7-code-highspeed", "image": True, "video": True},
    {"id": "kimi-k2.6", "image": True, "video": True},
    {"id": "kimi-k2.5", "image": True, "video": True},
    {"id": "kimi-k2-thinking", "image": False, "video": False},
]


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
        if self.personality.litellm:  # a proxy without a database cannot look a wrong key up
            return self.error(litellm.no_db())
        return self.error(ApiError(401, "invalid_authentication_error", "Invalid Authentication"))

    def model_ids(self) -> list[str]:
        return [self.personality.model_prefix + m["id"] for m in MODELS]

    def bare_model(self, model: str) -> str | None:
        """The model id a request names — directly, or through one of the gateway aliases configured."""
        prefix = self.personality.model_prefix
        model = self.settings.aliases.get(model, model)
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
        """A suite's own answer when the request is one of its prompts (each suite's play hook, eval/suite.py), else
        the generic answer."""
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        s = self.settings
        played = play(PlayRequest(messages, tools, body.get("tool_choice", "auto"), s.seed, wrong_rate=s.wrong_rate,
                                  slip_rate=s.slip_rate, tool_fault_rate=s.tool_fault_rate))
        if played is None:
            return answer_for(body, self.settings.seed, notes)
        return Answer(reasoning=" ".join([played.reasoning, *notes]), content=played.content,
                      tool_calls=[ToolCall(id=i, name=name, arguments=args) for i, name, args in played.tool_calls])

    # ---- endpoints -----------------------------------------------------------------------------------------------
    async def list_models(self, request: Request) -> Response:
        if (denied := self.deny(request)) is not None:
            return denied
        if self.personality.litellm and self.settings.aliases:  # a proxy lists its aliases, not what is behind them
            return JSONResponse({"object": "list", "data": [{"id": alias, "object": "model", "created": 1677610602,
                                                             "owned_by": "openai"} for alias in self.settings.aliases]})
        data = [
            {"id": self.personality.model_prefix + m["id"], "object": "model", "created": 1767225600,
             "owned_by": "moonshot", "context_length": 262144, "supports_image_in": m["image"],
             "supports_video_in": m["video"], "supports_reasoning": True}
            for m in MODELS
        ]
        return JSONResponse({"object": "list", "data": data})

    async def model_info(self, request: Request) -> Response:
        """LiteLLM's GET /model/info: each alias with the provider model behind it."""
        if (denied := self.deny(request)) is not None:
            return denied
        if not self.personality.litellm:
            return PlainTextResponse("404 page not found", status_code=404)
        return JSONResponse({"data": [{"model_name": alias, "litellm_params": {"model": f"moonshot/{target}"}}
                                      for alias, target in self.settings.aliases.items()]})

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
        try:  # UTF-8 only (json.loads would guess UTF-16/32 from bytes), and every string encodable back
            body = json.loads(raw.decode("utf-8"))
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeDecodeError:
            return self.error(bad_request("Invalid request: the body is not valid JSON (not UTF-8)"))
        except json.JSONDecodeError:
            return self.error(bad_request("Invalid request: the body is not valid JSON"))
        except UnicodeEncodeError:
            return self.error(bad_request("Invalid request: the body has an unpaired surrogate escape (\\ud800)"))
        except RecursionError:
            return self.error(bad_request("Invalid request: the body is nested too deeply"))
        except ValueError as exc:  # an integer of more digits than Python converts (a 5,000-digit max_tokens)
            return self.error(bad_request(f"Invalid request: a number in the body is out of range: {str(exc)[:80]}"))
        if not isinstance(body, dict):
            return self.error(bad_request("Invalid request: the body must be a JSON object"))
        return body

    async def chat(self, request: Request) -> Response:
        # injected latency counts from the request's arrival (before routing), so the emulator's own work does not add to it
        arrived = float(request.scope.get(ARRIVED) or time.monotonic())
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
            if bare is None and self.personality.litellm:
                return self.error(litellm.invalid_model(model))
            if bare is None:
                return self.error(ApiError(404, "resource_not_found_error",
                                           f"Not found the model {model} or Permission denied"))
            client_usage = bool(isinstance(body.get("stream_options"), dict)
                                and body["stream_options"].get("include_usage"))
            if self.personality.litellm:
                try:
                    body = litellm.rewrite_request(body, bare)
                except ApiError as err:
                    return self.error(err)
            if not self.personality.enforce_fixed:
                body = {k: v for k, v in body.items() if k not in FIXED}
            if self.settings.log:  # every violation, for the request log; the answer stays Moonshot's first error
                request.scope.setdefault("k2probe.violations", []).extend(violations(
                    body, enforce_fixed=self.personality.enforce_fixed,
                    reasoning_keys=self.personality.reasoning_keys()))
            try:
                check_shape(body)
                seen = inspect_media(body, self.files)
                prompt_tokens = validate_chat(body, enforce_fixed=self.personality.enforce_fixed,
                                              reasoning_keys=self.personality.reasoning_keys(),
                                              media_tokens=sum(m.tokens for m in seen))
            except ApiError as err:
                return self.error(err)
            answer = self.answer(body, [m.note(i + 1) for i, m in enumerate(seen)])
            turn = Turn(self, body, bare, answer, prompt_tokens, arrived)
            turn.client_usage = client_usage
            turn.stamp = request.headers.get(STAMP_HEADER) == "1"
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


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return PlainTextResponse("404 page not found" if status == 404 else "method not allowed", status_code=status)


LOG = logging.getLogger("k2probe.emulator")


class _RequestLog:
    """Raw ASGI middleware (with `log` on): one line per request — method, path, status, and every contract violation
    the body holds (the answer itself is the real API's first error)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            found = scope.get("k2probe.violations") or []
            LOG.info("%s %s %s%s", scope.get("method", ""), scope.get("path", ""), status[0] or "-",
                     f" · contract: {'; '.join(found)}" if found else "")


class _Arrival:
    """Raw ASGI middleware: stamps a request on reaching the app, where the server's protocol has not (another server)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault(ARRIVED, time.monotonic())
        await self.app(scope, receive, send)


def create_app(settings: EmulatorSettings | None = None) -> Starlette:
    """Build the emulator app; `app.state.emulator` exposes its state to in-process tests."""
    emu = Emulator(settings or EmulatorSettings())
    routes = [
        Route("/v1/models", emu.list_models, methods=["GET"]),
        Route("/v1/model/info", emu.model_info, methods=["GET"]),
        Route("/v1/chat/completions", emu.chat, methods=["POST"]),
        Route("/v1/files", emu.upload_file, methods=["POST"]),
        Route("/v1/files", emu.files_list, methods=["GET"]),
        Route("/v1/files/{file_id}", emu.file_item, methods=["GET", "DELETE"]),
        Route("/v1/tokenizers/estimate-token-count", emu.estimate, methods=["POST"]),
        Route("/v1/users/me/balance", emu.balance, methods=["GET"]),
    ]
    middleware = [Middleware(_Arrival)] + ([Middleware(_RequestLog)] if emu.settings.log else [])
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found}, middleware=middleware)
    app.state.emulator = emu
    app.state.request_id = uuid.uuid4().hex
    return app
