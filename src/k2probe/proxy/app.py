"""The proxy's HTTP side: an OpenAI-compatible /v1 (chat completions, models) that checks each request, refuses or
repairs it by mode, forwards it to the route with the route's key (the client's Authorization is never forwarded nor
kept), passes the answer through as it arrives — SSE chunks relayed before they are read — and records the call.

The added work per streamed chunk is one json.loads after the chunk has gone on, to remember the turn's reasoning and
tool calls and read usage; the timings are the kernel's receive stamps (client.wire), as everywhere in k2probe."""

from __future__ import annotations

import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as Path

from k2probe import __version__
from k2probe.client import answers
from k2probe.client.stream import StreamAccumulator
from k2probe.client.transport import POOL_LIMITS, Clock, price_for, request_seconds, stall_seconds
from k2probe.client.wire import SOCKET_OPTIONS, arrival, stamped
from k2probe.core import contract
from k2probe.core.config import Route
from k2probe.core.failures import Failure, stream_error
from k2probe.core.profiles import Profile
from k2probe.core.records import CallRecord, Usage, cost_of
from k2probe.proxy.checks import Finding, check_request
from k2probe.proxy.memory import Memory, bounded
from k2probe.proxy.repair import refusal, repair
from k2probe.proxy.stats import Stats

Mode = Literal["observe", "enforce", "repair"]
MODES: tuple[str, ...] = ("observe", "enforce", "repair")
UNAUTHORISED = contract.ApiError(401, "invalid_authentication_error", "Invalid Authentication")
PASSED_HEADERS = ("retry-after", "retry-after-ms", "x-request-id", "x-should-retry")  # what a client acts on
_TRACE = ((".connect_tcp.started", "connect"), (".connect_tcp.complete", "tcp"), (".start_tls.complete", "tls"),
          (".send_request_headers.started", "wire"))


class Sink(Protocol):
    """Where the proxy's run goes (recording.py's store sink; nothing in a bare app)."""

    def session(self, number: int) -> str: ...
    def call(self, record: CallRecord) -> None: ...
    def findings(self, session: str, request: int, findings: list[Finding]) -> None: ...


class NoSink:
    """Sessions numbered in memory, nothing kept."""

    def session(self, number: int) -> str:
        return f"session-{number}"

    def call(self, record: CallRecord) -> None:
        return None

    def findings(self, session: str, request: int, findings: list[Finding]) -> None:
        return None


@dataclass
class Handled:
    """One request as the proxy handled it, for whoever watches (the live line, tests)."""

    number: int
    session: str
    label: str  # session-N
    findings: list[Finding]
    record: CallRecord
    refused: bool = False
    repaired: bool = False


@dataclass
class Proxy:
    """One route behind one local endpoint, in one mode."""

    route: Route
    profile: Profile
    mode: Mode = "observe"
    token: str | None = None  # the local token a client must send as its key (None: any key, never forwarded)
    sink: Sink = field(default_factory=NoSink)
    on_handled: Callable[[Handled], None] | None = None
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self._sessions = itertools.count(1)
        self.labels: dict[str, str] = {}  # session id → its label (session-N, as stored), for what is printed
        self.memory = Memory(new_session=self._new_session)
        self._numbers = itertools.count(1)
        self.price = price_for(self.route, self.profile)
        self._client: httpx2.AsyncClient | None = None
        base = (self.route.base_url or "").rstrip("/")
        self.chat_url, self.models_url = f"{base}/chat/completions", f"{base}/models"
        self._headers = {"User-Agent": f"k2probe-proxy/{__version__}", **self.route.headers,
                         "Authorization": f"Bearer {self.route.key()}", "Content-Type": "application/json"}

    def _new_session(self) -> str:
        number = next(self._sessions)
        session = self.sink.session(number)
        self.labels[session] = f"session-{number}"
        bounded(self.labels)
        return session

    def client(self) -> httpx2.AsyncClient:
        """The upstream client, made in the serving loop on first use: pooled, TCP_NODELAY, kernel-stamped reads."""
        if self._client is None:
            transport = stamped(httpx2.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS, limits=POOL_LIMITS))
            self._client = httpx2.AsyncClient(transport=transport, limits=POOL_LIMITS,
                                              timeout=httpx2.Timeout(request_seconds(), connect=5.0,
                                                                     read=stall_seconds()))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- the endpoints -----------------------------------------------------------------------------------------
    def _refuse_client(self, request: Request) -> Response | None:
        if self.token is None:
            return None
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        return JSONResponse(UNAUTHORISED.body(), status_code=401)

    async def models(self, request: Request) -> Response:
        if (refused := self._refuse_client(request)) is not None:
            return refused
        try:
            answer = await self.client().get(self.models_url, headers=self._headers)
        except httpx2.HTTPError as exc:
            return _unreachable(exc)
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type", "application/json"))

    async def chat(self, request: Request) -> Response:
        if (refused := self._refuse_client(request)) is not None:
            return refused
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        number = next(self._numbers)
        findings: list[Finding] = []
        if not isinstance(body, dict):  # nothing to check: the route says what it says about it
            body = {}
            session = self.memory.session_for([])
        else:
            messages = body.get("messages")
            session = self.memory.session_for(messages if isinstance(messages, list) else [])
            try:
                findings = check_request(body, self.profile, self.memory, session=session, path=request.url.path,
                                         body_bytes=len(raw))
            except Exception:  # a body too odd for a check: forwarded unchecked, never the client's traffic broken
                self.stats.unchecked += 1
        record = CallRecord(route=self.route.name, model=str(body.get("model")), endpoint="/chat/completions",
                            stream=bool(body.get("stream")), request=body, purpose="proxy", sample_id=session,
                            step=number, started_at=time.time())
        handled = Handled(number, session, self.labels.get(session, session), findings, record)
        if self.mode == "enforce" and (error := refusal(body, self.profile, findings)) is not None:
            handled.refused = True
            record.status, record.error_type, record.error_message = error.status, error.type, error.message
            record.retry_reason = "refused by the proxy (enforce): not sent"
            self._done(handled)
            return JSONResponse(error.body(), status_code=error.status)
        if self.mode == "repair" and findings:
            fixed = repair(body, self.profile, self.memory, findings)
            if fixed != body or any(f.kind == "doubled_v1" for f in findings):
                handled.repaired = True
                body, raw = fixed, json.dumps(fixed, ensure_ascii=False).encode()
                record.request = body
        return await self._forward(raw, body, handled)

    # ---- forwarding ------------------------------------------------------------------------------------------
    async def _forward(self, raw: bytes, body: dict[str, Any], handled: Handled) -> Response:
        record = handled.record
        stamps: dict[str, float] = {}

        async def trace(name: str, info: dict[str, Any]) -> None:
            for suffix, key in _TRACE:
                if name.endswith(suffix):
                    stamps[key] = time.perf_counter()

        path = "" if handled.repaired or not any(f.kind == "doubled_v1" for f in handled.findings) else "/v1"
        url = self.chat_url.replace("/chat/completions", f"{path}/chat/completions")
        upstream = self.client().build_request("POST", url, content=raw, headers=self._headers,
                                               extensions={"trace": trace})
        clock = Clock(time.perf_counter(), stamps)
        try:
            response = await self.client().send(upstream, stream=True)
        except httpx2.HTTPError as exc:
            record.error_type, record.error_message = "unreachable", f"{type(exc).__name__}: {exc}"[:300]
            self._done(handled)
            return _unreachable(exc)
        record.status = response.status_code
        kind = response.headers.get("content-type", "")
        if response.status_code == 200 and "event-stream" in kind:
            return StreamingResponse(self._relay(response, handled, clock), status_code=200,
                                     media_type="text/event-stream",
                                     headers={"cache-control": "no-cache", **_passed(response)})
        try:
            content = await response.aread()
            end = arrival(response)
        finally:
            await response.aclose()
        record.latency_ms = clock.since_wire(end)
        self._plain(response.status_code, content, kind, handled)
        return Response(content, status_code=response.status_code, media_type=kind or None,
                        headers=_passed(response))

    def _plain(self, status: int, content: bytes, kind: str, handled: Handled) -> None:
        record = handled.record
        text = content.decode("utf-8", "replace")
        if status >= 400:
            record.error_type, record.error_message = _error_of(status, text)
        else:
            checked = answers.completion(status, text, kind)
            if isinstance(checked, Failure):
                record.error_type, record.error_message = checked.type, checked.message
            else:
                data, usage = checked
                choice = data["choices"][0]
                message = choice.get("message") or {}
                record.finish_reason = choice.get("finish_reason")
                record.reasoning_field = next((k for k in ("reasoning_content", "reasoning") if k in message), None)
                record.usage_location = ("usage" if data.get("usage") else "choices[0].usage") if usage else None
                self._account(usage or Usage(), record)
                self.memory.remember(message, handled.session, handled.number)
        self._done(handled)

    async def _relay(self, response: httpx2.Response, handled: Handled, clock: Clock) -> AsyncIterator[bytes]:
        """Each piece goes on as it arrives; only then is it read (its lines, for the accumulator)."""
        record = handled.record
        acc = StreamAccumulator()
        pending = b""
        try:
            async for piece in response.aiter_bytes():
                now = arrival(response)
                yield piece
                pending += piece
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._feed(line, acc, record, now)
        except httpx2.HTTPError as exc:
            record.error_type = "stream_cut"
            record.error_message = f"the route's stream broke after {acc.chunks} chunks: {type(exc).__name__}"
        except BaseException:  # the client went away (or the server is stopping): what came is still recorded
            record.error_type = record.error_type or "client_gone"
            record.error_message = record.error_message or f"the client stopped reading after {acc.chunks} chunks"
            raise
        finally:
            await response.aclose()
            if pending:
                self._feed(pending, acc, record, time.perf_counter())
            record.ttft_ms, record.ttfc_ms = clock.since_wire(acc.first_token_at), clock.since_wire(
                acc.first_content_at)
            record.latency_ms = clock.since_wire(acc.last_token_at if acc.last_token_at is not None
                                                 else time.perf_counter())
            record.itl_ms = acc.inter_token_ms()
            record.reasoning_field, record.usage_location = acc.reasoning_field, acc.usage_location
            record.finish_reason = acc.finish_reason
            if record.error_type is None and acc.finish_reason is None:
                record.error_type = "stream_cut"
                record.error_message = f"the stream ended before any finish_reason ({acc.chunks} chunks)"
            try:
                usage = answers.usage_of(acc.usage)
            except ValueError:
                usage = Usage()
            self._account(usage, record)
            if acc.chunks:
                self.memory.remember(acc.message(), handled.session, handled.number)
            self._done(handled)

    def _feed(self, line: bytes, acc: StreamAccumulator, record: CallRecord, now: float) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            record.error_type, record.error_message = "malformed_response", "a chunk of the stream is not JSON"
            return
        if not isinstance(chunk, dict):
            return
        if chunk.get("error") and not chunk.get("choices"):
            failure = stream_error(chunk)
            record.error_type, record.error_message = failure.type, failure.message
            return
        try:
            acc.feed(chunk, now)
        except (AttributeError, TypeError, KeyError):  # an odd chunk: relayed all the same, said in the record
            record.error_type, record.error_message = "malformed_response", "a chunk of the stream has an odd shape"

    def _account(self, usage: Usage, record: CallRecord) -> None:
        record.prompt_tokens, record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        record.reasoning_tokens, record.cached_tokens = usage.reasoning_tokens, usage.cached_tokens
        if usage.prompt_tokens or usage.completion_tokens:
            record.cost_usd = cost_of(usage, self.price)
            record.price_source = f"{self.price.source} ({self.price.as_of})" if self.price else "cost unknown"

    def _done(self, handled: Handled) -> None:
        stats, record = self.stats, handled.record
        stats.requests += 1
        stats.streamed += record.stream
        stats.refused += handled.refused
        stats.repaired += handled.repaired
        stats.sessions.add(handled.session)
        if record.error_type is not None and not handled.refused and record.error_type != "client_gone":
            stats.errors += 1
        if record.latency_ms is not None and record.error_type is None:
            stats.latencies_ms.append(record.latency_ms)
        for finding in handled.findings:
            stats.findings[finding.kind] += 1
        if handled.findings:
            self.sink.findings(handled.session, handled.number, handled.findings)
        self.sink.call(record)
        if self.on_handled is not None:
            self.on_handled(handled)


def _passed(response: httpx2.Response) -> dict[str, str]:
    """The route's headers a client acts on (Retry-After, rate-limit figures), passed on; never its cookies."""
    return {k: v for k, v in response.headers.items()
            if k.lower() in PASSED_HEADERS or k.lower().startswith("x-ratelimit-")}


def _error_of(status: int, text: str) -> tuple[str, str]:
    """The error type and message of a refusal the route answered (its envelope when it has one)."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        return str(error.get("type") or error.get("code") or f"http_{status}")[:64], str(error.get("message"))[:300]
    return f"http_{status}", " ".join(text[:200].split())


def _unreachable(exc: Exception) -> Response:
    error = contract.ApiError(502, "proxy_upstream_error", f"k2probe proxy: the route could not be reached "
                                                           f"({type(exc).__name__})")
    return JSONResponse(error.body(), status_code=502)


def create_app(proxy: Proxy) -> Starlette:
    """The proxy's Starlette app: /v1/chat/completions (and a doubled /v1/v1/…, to say so), /v1/models."""
    routes = [Path(p, proxy.chat, methods=["POST"]) for p in ("/v1/chat/completions", "/v1/v1/chat/completions")]
    routes.append(Path("/v1/models", proxy.models, methods=["GET"]))
    app = Starlette(routes=routes)
    app.state.proxy = proxy
    return app
