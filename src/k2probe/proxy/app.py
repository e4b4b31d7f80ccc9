"""The proxy's HTTP side: an OpenAI-compatible /v1 (chat completions, models) that checks each request, refuses or
repairs it by mode, forwards it to the route with the route's key (the client's Authorization is never forwarded nor
kept), passes the answer through as it arrives — SSE chunks relayed before they are read — and records the call.

The chat endpoint is raw ASGI (no routing, no StreamingResponse task group per request), the route is reached over
load/h1.py's lean HTTP/1.1 (proxy/upstream.py), and the added work per streamed chunk is one orjson.loads after the
chunk has gone on, to remember the turn's reasoning and tool calls and read usage; the timings are the kernel's receive
stamps (client.wire), as everywhere in k2probe."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as Path

from k2probe import __version__
from k2probe.client import answers
from k2probe.client.stream import StreamAccumulator
from k2probe.client.transport import Clock, price_for
from k2probe.core import contract
from k2probe.core.config import Route
from k2probe.core.failures import Failure, stream_error
from k2probe.core.profiles import Profile
from k2probe.core.records import CallRecord, Usage, cost_of
from k2probe.proxy.backlog import Backlog
from k2probe.proxy.checks import Finding, check_request
from k2probe.proxy.memory import Memory, bounded
from k2probe.proxy.repair import refusal, repair
from k2probe.proxy.stats import Stats
from k2probe.proxy.upstream import Answer, Pending, PooledAnswer, PooledPending, Upstream, UpstreamError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Mode = Literal["observe", "enforce", "repair"]
MODES: tuple[str, ...] = ("observe", "enforce", "repair")
UNAUTHORISED = contract.ApiError(401, "invalid_authentication_error", "Invalid Authentication")
PASSED_HEADERS = ("retry-after", "retry-after-ms", "x-request-id", "x-should-retry")  # what a client acts on
CHAT_PATHS = ("/v1/chat/completions", "/v1/v1/chat/completions")
EARLY, TRANSPORT = "k2probe.early", "k2probe.transport"  # what the server's protocol leaves in a chat request's scope


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
    write_high: int = 262144  # bytes waiting for a slow client past which a stream is relayed awaiting it (uvicorn drains)

    def __post_init__(self) -> None:
        self._sessions = itertools.count(1)
        self.labels: dict[str, str] = {}  # session id → its label (session-N, as stored), for what is printed
        self.memory = Memory(new_session=self._new_session)
        self._numbers = itertools.count(1)
        self.backlog = Backlog()
        self.price = price_for(self.route, self.profile)
        base = (self.route.base_url or "").rstrip("/")
        self.upstream = Upstream(base, {"User-Agent": f"k2probe-proxy/{__version__}", **self.route.headers,
                                        "Authorization": f"Bearer {self.route.key()}",
                                        "Content-Type": "application/json"})

    def _new_session(self) -> str:
        number = next(self._sessions)
        session = self.sink.session(number)
        self.labels[session] = f"session-{number}"
        bounded(self.labels)
        return session

    async def aclose(self) -> None:
        self.backlog.flush()
        await self.upstream.aclose()

    # ---- the endpoints -----------------------------------------------------------------------------------------
    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.token is None:
            return True
        given = next((v for k, v in headers if k == b"authorization"), b"").decode("latin-1")
        return hmac.compare_digest(given.removeprefix("Bearer ").strip().encode(), self.token.encode())

    async def models(self, request: Request) -> Response:
        if not self._authorised(request.scope["headers"]):
            return Response(_json(UNAUTHORISED.body()), status_code=401, media_type="application/json")
        try:
            status, content, kind = await self.upstream.get("/models")
        except UpstreamError as exc:
            return Response(_json(_unreachable(exc)), status_code=502, media_type="application/json")
        return Response(content, status_code=status, media_type=kind)

    def early(self, scope: Scope, raw: bytes) -> Pending | None:
        """A chat request whose body is all in, handed over by the server's protocol from its socket's callback:
        in observe mode (which forwards as is) it goes on to the route at once — a burst of requests is not sent
        one task after another — and the request's task takes its answer (`chat`). None: it goes the usual way."""
        if self.mode != "observe" or not self._authorised(scope["headers"]):
            return None
        pending = self.upstream.send_now(f"{_doubled(scope['path'])}/chat/completions", raw)
        if pending is not None:
            scope[EARLY] = (pending, time.time())
        return pending

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /v1/chat/completions, as raw ASGI: the body read, checked, refused or repaired by mode, forwarded. In
        observe mode (which forwards as is) it goes on first — from the server's callback when it can (`early`) —
        and is checked in the backlog, after the answers that came before it, while the route works on it."""
        if not self._authorised(scope["headers"]):
            await _respond(send, 401, _json(UNAUTHORISED.body()), "application/json")
            return
        raw = await _read_body(receive)
        # sent early or not is settled once the body is in: `early` runs in the very callback that completes it
        early: tuple[Pending, float] | None = scope.pop(EARLY, None)
        if raw is None:  # the client left before its request was in (or, sent early, before its answer began)
            if early is not None:
                early[0].abandon()
            return
        transport = scope.get(TRANSPORT)
        if self.mode == "observe":
            self.stats.ways["sent early" if early is not None else "sent"] += 1
            if early is not None:
                pending: Pending | PooledPending | None = early[0]
                clock, failed, started_at = Clock(early[0].stamps["wire"], early[0].stamps), None, early[1]
            else:
                started_at = time.time()
                pending, clock, failed = await self._start(_doubled(scope["path"]), raw)
            handled = self._begin(started_at)
            self.backlog.add(self._check, handled, raw, scope["path"])
            await self._forward(pending, failed, clock, handled, receive, send, transport)
            return
        started_at = time.time()
        self.backlog.flush()  # the turns relayed before this request remembered, before it is checked
        handled = self._begin(started_at)
        self._check(handled, raw, scope["path"])
        body, record, findings = handled.record.request, handled.record, handled.findings
        if self.mode == "enforce" and (error := refusal(body, self.profile, findings)) is not None:
            handled.refused = True
            record.status, record.error_type, record.error_message = error.status, error.type, error.message
            record.retry_reason = "refused by the proxy (enforce): not sent"
            self._done(handled)
            await _respond(send, error.status, _json(error.body()), "application/json")
            return
        if self.mode == "repair" and findings:
            fixed = repair(body, self.profile, self.memory, findings)
            if fixed != body or any(f.kind == "doubled_v1" for f in findings):
                handled.repaired = True
                raw = json.dumps(fixed, ensure_ascii=False).encode()
                record.request = fixed
        path = "" if handled.repaired or not any(f.kind == "doubled_v1" for f in findings) else "/v1"
        self.stats.ways["sent"] += 1
        pending, clock, failed = await self._start(path, raw)
        await self._forward(pending, failed, clock, handled, receive, send, transport)

    def _begin(self, started_at: float) -> Handled:
        """A request's number and record, before anything is known of it (`_check` reads it)."""
        number = next(self._numbers)
        record = CallRecord(route=self.route.name, model="None", endpoint="/chat/completions", stream=False,
                            request={}, purpose="proxy", step=number, started_at=started_at)
        return Handled(number, "", "", [], record)

    def _check(self, handled: Handled, raw: bytes, path: str) -> None:
        """The request read: its session, its findings, its record filled in."""
        try:
            body = _loads(raw)
        except ValueError:
            body = None
        findings: list[Finding] = []
        if not isinstance(body, dict):  # nothing to check: the route says what it says about it
            body = {}
            session = self.memory.session_for([])
        else:
            messages = body.get("messages")
            session = self.memory.session_for(messages if isinstance(messages, list) else [])
            try:
                findings = check_request(body, self.profile, self.memory, session=session, path=path,
                                         body_bytes=len(raw))
            except Exception:  # a body too odd for a check: forwarded unchecked, never the client's traffic broken
                self.stats.unchecked += 1
        record = handled.record
        record.model, record.stream, record.request = str(body.get("model")), bool(body.get("stream")), body
        record.sample_id = handled.session = session
        handled.label, handled.findings = self.labels.get(session, session), findings

    # ---- forwarding ------------------------------------------------------------------------------------------
    async def _start(self, path: str, raw: bytes) -> tuple[Pending | PooledPending | None, Clock,
                                                            UpstreamError | None]:
        """The request sent on (or why it could not be), with the clock its timings count on."""
        stamps: dict[str, float] = {}
        clock = Clock(time.perf_counter(), stamps)
        try:
            return await self.upstream.start(f"{path}/chat/completions", raw, stamps), clock, None
        except UpstreamError as exc:
            return None, clock, exc

    async def _unreachable(self, exc: UpstreamError, handled: Handled, send: Send) -> None:
        """The route could not be reached or read: recorded as such, and a 502 in the API's error shape."""
        handled.record.error_type, handled.record.error_message = "unreachable", f"{exc.name}: {exc}"[:300]
        self.backlog.add(self._done, handled)
        await _respond(send, 502, _json(_unreachable(exc)), "application/json")

    async def _forward(self, pending: Pending | PooledPending | None, failed: UpstreamError | None, clock: Clock,
                       handled: Handled, receive: Receive, send: Send, transport: Any = None) -> None:
        record = handled.record
        try:
            if pending is None:
                raise failed or UpstreamError("ConnectError")
            answer = await pending.answer()
        except UpstreamError as exc:
            await self._unreachable(exc, handled, send)
            return
        record.status = answer.status
        if answer.status == 200 and "event-stream" in answer.kind:
            await self._relay(answer, handled, clock, receive, send, transport)
            return
        try:
            try:
                content = await answer.read()
            except UpstreamError as exc:
                await self._unreachable(exc, handled, send)
                return
            end = answer.arrived
        finally:
            await answer.aclose()
        record.latency_ms = clock.since_wire(end)
        try:  # the client has its answer before the proxy reads it
            await _respond(send, answer.status, content, answer.kind or None, _passed(answer.headers))
        finally:
            self.backlog.add(self._plain, answer.status, content, answer.kind, handled)

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

    async def _relay(self, answer: Answer | PooledAnswer, handled: Handled, clock: Clock, receive: Receive,
                     send: Send, transport: Any = None) -> None:
        """Each piece goes on as it arrives — written to the client's `transport` from the route's socket callback
        where the server gave one (no task woken per piece), else through ASGI — and is read once the stream is over
        (in the backlog). A client that leaves (its connection closed) stops the relay, as Starlette's
        StreamingResponse did."""
        acc = StreamAccumulator()
        came: list[tuple[bytes, float]] = []  # each piece relayed, with its arrival
        task = asyncio.current_task()
        state = {"finished": False, "gone": False}

        def left(watcher: asyncio.Task[Message]) -> None:
            if watcher.cancelled():
                return
            watcher.exception()  # taken, so a receive that failed is not reported as never retrieved
            if not state["finished"] and task is not None:
                state["gone"] = True
                task.cancel()

        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"cache-control", b"no-cache"), *_passed(answer.headers),
                                (b"content-type", b"text/event-stream; charset=utf-8")]})
        watcher = asyncio.ensure_future(receive())
        watcher.add_done_callback(left)
        raised = True
        finished: bool | None = None
        broke: tuple[str, str] | None = None  # how the stream ended early: said once its chunks are counted
        try:
            if transport is not None and isinstance(answer, Answer):
                high = self.write_high

                def write(piece: bytes, stamp: float) -> bool:  # as uvicorn frames a chunk of a chunked response
                    if transport.is_closing():
                        return False
                    transport.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    came.append((piece, stamp))
                    return bool(transport.get_write_buffer_size() <= high)

                finished = await answer.relayed(write)
            if not finished:  # not a body for the callback, or a client slow to read: the rest awaited, piece by piece
                async for piece in answer.pieces():
                    now = answer.arrived
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    came.append((piece, now))
            raised = False
        except UpstreamError as exc:
            broke = ("stream_cut", exc.name)
            raised = False
        except BaseException as exc:  # the client went away (or the server is stopping): what came is still recorded
            timeout = answer.watch.timed_out() if isinstance(answer, Answer) and isinstance(
                exc, asyncio.CancelledError) else None
            if timeout is not None:  # the whole answer's deadline passed while the client was being written to
                broke = ("stream_cut", timeout.name)
            else:
                broke = ("client_gone", "")
                if not state["gone"]:
                    raise
                if task is not None:
                    task.uncancel()
            raised = False
        finally:
            state["finished"] = True
            self.stats.ways["slowed" if finished is False else "relayed in callback"
                            if getattr(answer, "relaying", False) else "relayed awaited"] += 1
            watcher.cancel()
            await answer.aclose()
            if raised:
                self.backlog.add(self._ended, acc, came, handled, clock, broke)
        try:  # the client has the stream's end before the proxy reads it
            if not state["gone"]:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.backlog.add(self._ended, acc, came, handled, clock, broke)

    def _ended(self, acc: StreamAccumulator, came: list[tuple[bytes, float]], handled: Handled,
               clock: Clock, broke: tuple[str, str] | None = None) -> None:
        """A relayed stream's record completed from what came, read line by line with each piece's arrival:
        timings, usage, the turn remembered; and how it ended early (`broke`: the route cut it, its error's name;
        or the client left)."""
        record = handled.record
        pending = b""
        for piece, now in came:
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._feed(line, acc, record, now)
        if pending:
            self._feed(pending, acc, record, came[-1][1])
        if broke is not None and broke[0] == "stream_cut":
            record.error_type = "stream_cut"
            record.error_message = f"the route's stream broke after {acc.chunks} chunks: {broke[1]}"
        elif broke is not None:
            record.error_type = record.error_type or "client_gone"
            record.error_message = record.error_message or f"the client stopped reading after {acc.chunks} chunks"
        record.ttft_ms, record.ttfc_ms = clock.since_wire(acc.first_token_at), clock.since_wire(acc.first_content_at)
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
            chunk = _loads(data)
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


def _doubled(path: str) -> str:
    """What observe mode keeps of a doubled /v1 when it forwards as is: the extra "/v1" ("" for a path as it should
    be)."""
    return "/v1" if path.startswith("/v1/v1") else ""


def _loads(data: bytes) -> Any:
    """JSON as json.loads reads it, at orjson's speed: what orjson refuses (NaN, a lone surrogate) json still reads."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _json(content: Any) -> bytes:
    """A JSON body as Starlette's JSONResponse writes it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def _passed(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """The route's headers a client acts on (Retry-After, rate-limit figures), passed on; never its cookies."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
            if k.lower() in PASSED_HEADERS or k.lower().startswith("x-ratelimit-")]


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body, or None when the client left before it was all in."""
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _respond(send: Send, status: int, content: bytes, kind: str | None,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole answer, its headers as Starlette's Response writes them (text/* with its charset)."""
    head = [*(headers or []), (b"content-length", str(len(content)).encode())]
    if kind:
        if kind.startswith("text/") and "charset=" not in kind.lower():
            kind += "; charset=utf-8"
        head.append((b"content-type", kind.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": content, "more_body": False})


def _error_of(status: int, text: str) -> tuple[str, str]:
    """The error type and message of a refusal the route answered (its envelope when it has one)."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        return str(error.get("type") or error.get("code") or f"http_{status}")[:64], str(error.get("message"))[:300]
    return f"http_{status}", " ".join(text[:200].split())


def _unreachable(exc: UpstreamError) -> dict[str, Any]:
    error = contract.ApiError(502, "proxy_upstream_error", f"k2probe proxy: the route could not be reached "
                                                           f"({exc.name})")
    return error.body()


class ChatEndpoint:
    """The chat path as a raw ASGI app (Starlette's Route passes it the scope as it is)."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.proxy.chat(scope, receive, send)


class ProxyApp:
    """The proxy's ASGI app: a POST to the chat path goes straight to the proxy (the hot path: no routing, no
    middleware); everything else through Starlette — /v1/models, a 404 or a 405 as before."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        chat = ChatEndpoint(proxy)
        routes = [Path(p, chat, methods=["POST"]) for p in CHAT_PATHS]
        routes.append(Path("/v1/models", proxy.models, methods=["GET"]))
        self.starlette = Starlette(routes=routes)
        self.starlette.state.proxy = proxy
        self.state = self.starlette.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in CHAT_PATHS:
            await self.proxy.chat(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


def create_app(proxy: Proxy) -> ProxyApp:
    """The proxy's app: /v1/chat/completions (and a doubled /v1/v1/…, to say so), /v1/models."""
    return ProxyApp(proxy)
