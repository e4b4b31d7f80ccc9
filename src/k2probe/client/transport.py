"""The request path: the official openai SDK underneath, our own retry policy on top, every attempt timed and recorded."""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

import httpx2
import openai
from openai import AsyncOpenAI, DefaultAsyncHttpx2Client

from k2probe import __version__
from k2probe.client import answers
from k2probe.client.stream import Listener, StreamAccumulator
from k2probe.client.wire import SOCKET_OPTIONS, arrival, stamped
from k2probe.core.config import Route
from k2probe.core.errors import ConfigError
from k2probe.core.failures import Failure, from_exception, stream_error, words
from k2probe.core.profiles import Price, Profile
from k2probe.core.records import CallRecord, Usage, cost_of, links
from k2probe.core.stamps import SERVER_TTFT

OnCall = Callable[[CallRecord], None]
_STAMPS: contextvars.ContextVar[dict[str, float]] = contextvars.ContextVar("k2probe_stamps")
_TRACE = ((".connect_tcp.started", "connect"), (".connect_tcp.complete", "tcp"), (".start_tls.complete", "tls"),
          (".send_request_headers.started", "wire"))
FALLBACK_CAUSES = {"server_error", "rate_limited", "quota_exhausted", "unreachable"}  # retries spent, or no retry
SHAPE_PATHS, SHAPE_CHARS = 300, 200  # what is kept of an answer's shape: a hostile one may have any number of keys
POOL_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)  # the openai SDK's own defaults


async def _stamp(request: httpx2.Request) -> None:
    """httpx2 request hook: when the SDK hands the request over; then httpcore's trace says when a connection was
    taken or opened and when the headers went onto the wire — the moment server timings count from."""
    stamps = _STAMPS.get(None)
    if stamps is None:
        return
    stamps["handed"] = time.perf_counter()

    async def trace(name: str, info: dict[str, Any]) -> None:
        for suffix, key in _TRACE:
            if name.endswith(suffix):
                stamps[key] = time.perf_counter()
        if name.endswith(".receive_response_headers.complete"):  # the status, before a slow body is read to its end
            answer = info.get("return_value")
            if isinstance(answer, tuple) and len(answer) > 1 and isinstance(answer[1], int):
                stamps["status"] = float(answer[1])

    request.extensions["trace"] = trace


@dataclass
class RetryPolicy:
    """Retry 429 rate limits and overloads, 5xx and connection errors, honouring Retry-After; never a quota 429."""

    max_retries: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0  # a longer Retry-After means: give up now and say so

    def delay(self, failure: Failure, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to stop."""
        if not failure.retryable or attempt >= self.max_retries:
            return None
        if failure.retry_after_s is not None:  # finite and ≥ 0 (failures.py); a little jitter so clients spread out
            if failure.retry_after_s > self.max_retry_after_s:
                return None
            return min(self.max_retry_after_s, failure.retry_after_s * (1.0 + random.random() / 10))
        backoff: float = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return backoff * (0.75 + random.random() / 2)


@dataclass
class Outcome:
    """The result of one logical request: the answer (or the failure) and every HTTP attempt it took."""

    message: dict[str, Any] | None = None
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    failure: Failure | None = None
    calls: list[CallRecord] = field(default_factory=list)
    shape: list[str] = field(default_factory=list)
    served_model: str | None = None  # the answer's own `model` field: what a gateway alias really reached
    server_ttft_ms: float | None = None  # the server's own TTFT, where it stamps one (k2probe's emulator, when asked)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def last(self) -> CallRecord:
        return self.calls[-1]

    @property
    def content(self) -> str:
        return str((self.message or {}).get("content") or "")

    @property
    def reasoning(self) -> str | None:
        message = self.message or {}
        value = message.get("reasoning_content", message.get("reasoning"))
        return value if isinstance(value, str) else None

    @property
    def retries(self) -> int:
        return len(self.calls) - 1


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """The set of key paths in a JSON document (lists as `[]`): the response shape. Recursive: only for documents
    answers.load accepted (depth bounded)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, f"{prefix}[]")
    return paths


def shape_of(paths: set[str]) -> list[str]:
    """The shape as stored: sorted, at most SHAPE_PATHS paths of at most SHAPE_CHARS characters each."""
    return [words(path, SHAPE_CHARS) for path in sorted(paths)[:SHAPE_PATHS]]


def _seconds_from(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, str(default)))
    except ValueError:
        value = default
    return value if math.isfinite(value) and value > 0 else default


def stall_seconds() -> float:
    """How long a stream may send nothing before it counts as stalled: K2PROBE_STALL_S, default 60 s."""
    return _seconds_from("K2PROBE_STALL_S", 60.0)


def request_seconds() -> float:
    """How long one HTTP attempt may take in all, however steadily bytes trickle in (the stall timer resets on each
    one): K2PROBE_REQUEST_TIMEOUT_S, default 900 s."""
    return _seconds_from("K2PROBE_REQUEST_TIMEOUT_S", 900.0)


def proxy_mounts() -> dict[str, httpx2.AsyncBaseTransport | None]:
    """HTTP(S)_PROXY / ALL_PROXY / NO_PROXY, read exactly as httpx reads them (and so as doctor's raw probes do): a
    client given its own transport would otherwise ignore them."""
    from httpx2._utils import get_environment_proxies

    return {pattern: None if url is None else stamped(httpx2.AsyncHTTPTransport(proxy=url, socket_options=SOCKET_OPTIONS,
                                                                                limits=POOL_LIMITS))
            for pattern, url in get_environment_proxies().items()}


def make_client(route: Route, timeout_s: float = 600.0) -> AsyncOpenAI:
    """An AsyncOpenAI client for a route; TCP_NODELAY so small SSE writes are not held back by Nagle's algorithm, and
    reads stamped by the kernel (client.wire) so stream timings are the server's, not this process's backlog."""
    if not route.api_key or not route.key():
        env = route.api_key_env or "AI_GATEWAY_API_KEY"
        raise ConfigError(f"no API key for route {route.name!r}", fix=f"export {env}=<your key>")
    if not route.base_url:
        raise ConfigError(f"route {route.name!r} has no base URL", fix="set AI_GATEWAY_BASE_URL")
    transport = stamped(httpx2.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS, limits=POOL_LIMITS))
    http_client = DefaultAsyncHttpx2Client(transport=transport, mounts=proxy_mounts(),
                                           timeout=httpx2.Timeout(timeout_s, connect=5.0), limits=POOL_LIMITS,
                                           event_hooks={"request": [_stamp]})
    headers = {"User-Agent": f"k2probe/{__version__}", **route.headers}
    return AsyncOpenAI(api_key=route.key(), base_url=route.base_url, max_retries=0, default_headers=headers,
                       http_client=http_client)


@dataclass
class Clock:
    """An attempt's clock: started when handed to the SDK; server timings count from when its headers reached the wire
    (after any wait for a pooled connection and any connect), so TTFT is the server's, not the client's queue."""

    started: float
    stamps: dict[str, float]

    def wire_start(self) -> float:
        return self.stamps.get("wire") or self.stamps.get("handed") or self.started

    def pool_ms(self) -> float:
        handed = self.stamps.get("handed")
        if handed is None:
            return 0.0
        return max(0.0, ((self.stamps.get("connect") or self.wire_start()) - handed) * 1000.0)

    def connect_ms(self) -> float:
        began = self.stamps.get("connect")
        done = self.stamps.get("tls") or self.stamps.get("tcp")
        return (done - began) * 1000.0 if began is not None and done is not None else 0.0

    @overload
    def since_wire(self, at: float) -> float: ...
    @overload
    def since_wire(self, at: None) -> None: ...
    def since_wire(self, at: float | None) -> float | None:
        return None if at is None else (at - self.wire_start()) * 1000.0

    def prep_ms(self) -> float:
        return ((self.stamps.get("handed") or self.wire_start()) - self.started) * 1000.0


def price_for(route: Route, profile: Profile) -> Price | None:
    """The price a route's calls are costed at: the user's override for the route, else its profile's."""
    override = route.price
    if override is None:
        return profile.price
    return Price(override.cache_hit_input if override.cache_hit_input is not None else override.cache_miss_input,
                 override.cache_miss_input, override.output, override.source, "user override")


class Transport:
    """Sends chat requests for one route and records each HTTP attempt through `on_call`."""

    def __init__(self, route: Route, profile: Profile, *, on_call: OnCall | None = None,
                 policy: RetryPolicy | None = None, concurrency: int | None = None, timeout_s: float = 600.0,
                 fallbacks: list[Transport] | None = None, fallback_from: str | None = None) -> None:
        self.route = route
        self.profile = profile
        self.fallbacks = fallbacks or []  # tried in turn when this route cannot answer (FALLBACK_CAUSES)
        self.fallback_from = fallback_from
        self.timeout_s = timeout_s
        self.client = make_client(route, timeout_s)
        self.on_call = on_call
        self.policy = policy or RetryPolicy()
        self._gate = asyncio.Semaphore(concurrency) if concurrency else None
        self.price = price_for(route, profile)

    async def aclose(self) -> None:
        await self.client.close()
        for fallback in self.fallbacks:
            await fallback.aclose()

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def chat(self, body: dict[str, Any], *, media: list[dict[str, Any]] | None = None,
                   listener: Listener | None = None, purpose: str | None = None) -> Outcome:
        """Send a (sanitised) chat body, retrying under the policy, then to each fallback route in turn while the
        failure is one a fallback can help with; the outcome lists every attempt, each recorded under the route
        that answered it. `purpose` says why the request was made, for whoever reads the records."""
        outcome = await self._chat(body, media=media, listener=listener, purpose=purpose)
        for fallback in self.fallbacks:
            if outcome.failure is None or outcome.failure.cause not in FALLBACK_CAUSES:
                break
            from k2probe.core.sanitize import sanitise

            moved = sanitise({**body, "model": fallback.route.model}, fallback.profile).body
            answer = await fallback._chat(moved, media=media, listener=listener, purpose=purpose)
            answer.calls = outcome.calls + answer.calls
            outcome = answer
        return outcome

    async def _chat(self, body: dict[str, Any], *, media: list[dict[str, Any]] | None = None,
                    listener: Listener | None = None, purpose: str | None = None) -> Outcome:
        outcome = Outcome()
        attempt = 0
        while True:
            record = CallRecord(route=self.route.name, model=str(body.get("model")), endpoint="/chat/completions",
                                stream=bool(body.get("stream")), request=body, attempt=attempt,
                                media=media or [], started_at=time.time(), purpose=purpose,
                                fallback_from=self.fallback_from, **links())
            try:
                await self._attempt(body, record, outcome, listener)
            except asyncio.CancelledError:  # a timeout or Ctrl-C: what the attempt cost so far is still recorded
                record.error_type = "cancelled"
                record.error_message = "cancelled (a timeout or an interrupt) before the answer was complete"
                outcome.calls.append(record)
                self._emit(record)
                raise
            outcome.calls.append(record)
            failure = outcome.failure
            wait = self.policy.delay(failure, attempt) if failure else None
            if wait is not None and failure is not None:
                record.retry_reason = f"{failure.type} (HTTP {failure.status}); waited {wait:.2f}s"
            elif failure is not None and failure.retryable and failure.retry_after_s is not None \
                    and failure.retry_after_s > self.policy.max_retry_after_s:
                record.retry_reason = (f"gave up: Retry-After {failure.retry_after_s:.0f} s is over the "
                                       f"{self.policy.max_retry_after_s:.0f} s this policy waits")
            self._emit(record)
            if wait is None:
                return outcome
            await asyncio.sleep(wait)
            attempt += 1
            outcome.failure = None

    def _emit(self, record: CallRecord) -> None:
        if self.on_call is not None:
            self.on_call(record)

    async def _attempt(self, body: dict[str, Any], record: CallRecord, outcome: Outcome,
                       listener: Listener | None = None) -> None:
        queued = time.perf_counter()
        if self._gate is not None:
            await self._gate.acquire()
        stamps: dict[str, float] = {}
        token = _STAMPS.set(stamps)
        try:
            started = time.perf_counter()
            record.queue_ms = (started - queued) * 1000.0
            clock = Clock(started, stamps)
            limit = request_seconds()
            try:
                async with asyncio.timeout(limit):
                    if body.get("stream"):
                        await self._stream(body, record, outcome, clock, listener)
                    else:
                        await self._plain(body, record, outcome, clock)
            except TimeoutError:  # a server trickling its answer: the whole attempt has a deadline, not only reads
                record.latency_ms = clock.since_wire(time.perf_counter())
                record.status = record.status or (int(stamps["status"]) if "status" in stamps else None)
                what = ("its answer was still coming" if record.status is not None else "no answer had begun")
                outcome.failure = Failure(record.status, "timeout", f"the request's deadline of {limit:g} s "
                                          f"(K2PROBE_REQUEST_TIMEOUT_S) passed: {what}",
                                          mid_stream=True)  # a retry would wait as long again
            record.prep_ms, record.pool_ms, record.connect_ms = clock.prep_ms(), clock.pool_ms(), clock.connect_ms()
        finally:
            _STAMPS.reset(token)
            if self._gate is not None:
                self._gate.release()
        if outcome.failure is not None:
            record.error_type, record.error_message = outcome.failure.type, outcome.failure.message
            record.status = record.status or outcome.failure.status
            if outcome.failure.type == "malformed_response" and record.cost_usd is None:
                record.price_source = "cost unknown: the answer could not be read"  # never a silent $0
        record.response_shape = outcome.shape

    def _split(self, body: dict[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        return {"model": body["model"], "messages": body["messages"], "extra_body": rest}

    async def _plain(self, body: dict[str, Any], record: CallRecord, outcome: Outcome, clock: Clock) -> None:
        try:
            raw = await self.client.chat.completions.with_raw_response.create(**self._split(body))
        except (openai.APIError, json.JSONDecodeError) as exc:
            record.latency_ms = clock.since_wire(time.perf_counter())
            outcome.failure = from_exception(exc)
            return
        response = raw.http_response
        record.latency_ms = clock.since_wire(time.perf_counter())
        record.status = response.status_code
        checked = answers.completion(response.status_code, response.text, response.headers.get("content-type", ""))
        if isinstance(checked, Failure):
            outcome.failure = checked
            return
        parsed, usage = checked
        outcome.shape = shape_of(key_paths(parsed))
        outcome.served_model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
        choice = parsed["choices"][0]
        message = choice["message"]
        outcome.message = message
        outcome.finish_reason = record.finish_reason = choice.get("finish_reason")
        record.reasoning_field = next((k for k in ("reasoning_content", "reasoning") if k in message), None)
        record.usage_location = ("usage" if parsed.get("usage") else "choices[0].usage") if usage else None
        self._account(usage or Usage(), record, outcome)

    async def _stream(self, body: dict[str, Any], record: CallRecord, outcome: Outcome, clock: Clock,
                      listener: Listener | None = None) -> None:
        """The SDK sends the request (its errors, retries off, headers); the answer's SSE lines are read and parsed
        here, each stamped when it arrives — no SDK object per chunk, so the client's own cost stays out of ITL."""
        acc = StreamAccumulator(listener=listener)
        content_type = ""
        try:
            async with self.client.chat.completions.with_streaming_response.create(
                    **self._split(body), stream=True,
                    timeout=httpx2.Timeout(self.timeout_s, connect=5.0, read=stall_seconds())) as response:
                record.status = response.http_response.status_code
                content_type = response.http_response.headers.get("content-type", "")
                done = False  # the body is still read to its end, so the connection goes back to the pool
                async for line in response.iter_lines():
                    if line.startswith(SERVER_TTFT):  # k2probe's emulator, asked for its own TTFT
                        outcome.server_ttft_ms = int(line[len(SERVER_TTFT):].strip() or 0) / 1000.0
                    if done or not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, event: names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        continue
                    chunk = answers.chunk(data, record.status)
                    if isinstance(chunk, Failure):
                        outcome.failure, done = chunk, True
                    elif chunk.get("error") and not chunk.get("choices"):
                        outcome.failure, done = stream_error(chunk), True
                    else:
                        acc.feed(chunk, arrival(response.http_response))
        except (openai.APIError, json.JSONDecodeError) as exc:
            outcome.failure = from_exception(exc, mid_stream=acc.chunks > 0 or record.status is not None)
        except httpx2.TimeoutException:
            outcome.failure = Failure(record.status, "timeout", f"the stream sent nothing for {stall_seconds():.0f} s "
                                      f"({acc.chunks} chunks received): stalled", mid_stream=acc.chunks > 0)
        except httpx2.HTTPError as exc:
            outcome.failure = Failure(record.status, "stream_cut", f"the connection broke mid-stream after "
                                      f"{acc.chunks} chunks: {type(exc).__name__}", mid_stream=True)
        record.ttft_ms, record.ttfc_ms = clock.since_wire(acc.first_token_at), clock.since_wire(acc.first_content_at)
        end = acc.last_token_at if acc.last_token_at is not None else time.perf_counter()
        record.latency_ms = clock.since_wire(end)
        record.itl_ms = acc.inter_token_ms()
        outcome.shape = shape_of(acc.shape)
        outcome.served_model = acc.model if isinstance(acc.model, str) else None
        record.reasoning_field, record.usage_location = acc.reasoning_field, acc.usage_location
        record.finish_reason = outcome.finish_reason = acc.finish_reason
        if outcome.failure is None and acc.chunks == 0 and "event-stream" not in content_type:
            outcome.failure = Failure(record.status, "non_json_response",
                                      f"asked for a stream, the server answered {content_type or 'no content type'}")
        elif outcome.failure is None and acc.finish_reason is None:
            outcome.failure = Failure(record.status, "stream_cut",
                                      f"the stream ended before any finish_reason ({acc.chunks} chunks received)",
                                      mid_stream=True)
        outcome.message = acc.message() if acc.chunks else None
        self._account(answers.usage_of(acc.usage), record, outcome)

    def _account(self, usage: Usage, record: CallRecord, outcome: Outcome) -> None:
        outcome.usage = usage
        record.prompt_tokens, record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        record.reasoning_tokens, record.cached_tokens = usage.reasoning_tokens, usage.cached_tokens
        if usage.prompt_tokens or usage.completion_tokens:
            record.cost_usd = cost_of(usage, self.price)
            record.price_source = f"{self.price.source} ({self.price.as_of})" if self.price else "cost unknown"
            if record.cost_usd is None and usage.gateway_cost is not None:
                record.cost_usd, record.price_source = usage.gateway_cost, "gateway usage.cost"
