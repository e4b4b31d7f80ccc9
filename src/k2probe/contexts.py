"""What an activity works in, as two contexts with one lifecycle each, handed to it explicitly:

- `RouteContext` (`open_route`): the route, its profile and how that was chosen, the notices for the user, the
  emulator serving it when it is emulated, and the transports that call it (its fallback routes ready to take over);
- `RunContext` (`open_run`): the store and one run in it: started with the configuration, each call recorded as it
  happens, a summary, then finished (`interrupted` on Ctrl-C, `error` on anything else).

A command over one route opens both (api.command_contexts); an evaluation opens one route context per route and
records them all in one run. This module sits between `recording` and `sandbox`: it uses core, client and recording,
and every activity above uses it. The emulator sits above every activity, so a route context does not start one
itself: the caller hands in `serve` (api.py hands in the built-in emulator)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from k2probe.core.config import Route, check_key, load_file, resolve_route, url_problem
from k2probe.core.errors import ConfigError
from k2probe.core.profiles import Profile, ProfileChoice
from k2probe.core.records import CallRecord
from k2probe.core.redact import Redactor, remember

if TYPE_CHECKING:  # the request path (openai) and the store (SQLAlchemy) load when a context is opened or used
    from k2probe.client.transport import OnCall, RetryPolicy, Transport
    from k2probe.recording.store import Store

ROUTE_CHECK = "Reply with the single word: ok"  # the one cheap request that proves a route before a command's work
EMULATOR_NOTICE = ("no API key or base URL configured: using the built-in Kimi emulator on {url} "
                   "(numbers describe the pipeline, not the model)")


class Serve(Protocol):
    """Serves an emulated route for the `with` block and yields the base URL it answers on (`fallback`: the route is
    another route's fallback, not the one the command names)."""

    def __call__(self, route: Route, *, fallback: bool) -> AbstractContextManager[str]: ...


@dataclass
class RouteContext:
    """One route ready to call: where it points (the emulator's URL when emulated), its profile and how it was chosen,
    what to tell the user, and its fallbacks."""

    route: Route
    choice: ProfileChoice
    notices: list[str] = field(default_factory=list)
    emulator_url: str | None = None  # the built-in emulator serving this route, when it is emulated
    fallbacks: list[tuple[Route, Profile]] = field(default_factory=list)

    @property
    def profile(self) -> Profile:
        return self.choice.profile

    @property
    def profile_how(self) -> str:
        return self.choice.how

    def transport(self, on_call: OnCall | None = None, *, policy: RetryPolicy | None = None,
                  concurrency: int | None = None) -> Transport:
        """A transport to this route (its fallbacks behind it), handing each call to `on_call` (a run's `record`)."""
        from k2probe.client.transport import Transport

        fallbacks = [Transport(route, profile, on_call=on_call, policy=policy, fallback_from=self.route.name)
                     for route, profile in self.fallbacks]
        return Transport(self.route, self.profile, on_call=on_call, policy=policy, concurrency=concurrency,
                         fallbacks=fallbacks)

    async def prove(self, command: str, within_s: float = 30.0) -> None:
        """One cheap request before a command's work (eval, agent, bench): a route whose configuration is wrong — key,
        base URL, model id, parameters, the account — stops the command here with the fix (exit 2), before anything
        is paid for or recorded against the model. Other trouble (rate limits, 5xx, a relay's rewrites) is left to the
        work itself, which retries, falls back and records it. Not recorded: it is no sample's call."""
        from k2probe.core.failures import CONFIGURATION, fix_for
        from k2probe.core.sanitize import sanitise

        body = sanitise({"model": self.route.model, "max_tokens": 64,
                         "messages": [{"role": "user", "content": ROUTE_CHECK}]}, self.profile).body
        from k2probe.client.transport import RetryPolicy

        async with self.transport(policy=RetryPolicy(max_retries=0)) as transport:  # one request, bounded
            try:
                outcome = await asyncio.wait_for(transport.chat(body, purpose=f"{command}: route check"), within_s)
            except TimeoutError:  # slow is not misconfigured: the work itself meets it, under its own --timeout
                return
        failure = outcome.failure
        if failure is not None and failure.cause in CONFIGURATION:
            raise ConfigError(f"route {self.route.name!r} cannot be used ({failure.cause}): {failure.line()}",
                              fix=fix_for(failure.cause, self.route.base_url, failure.type, self.route.api_key_env)
                              + " — then `k2probe doctor` to check the whole route")


@dataclass
class RunContext:
    """One run in the store: its calls are recorded as they happen (only their count is kept here) and `summary` is
    written with the run's end."""

    store: Store
    run_id: str
    command: str
    summary: dict[str, Any] = field(default_factory=dict)
    call_count: int = 0

    @property
    def redactor(self) -> Redactor:
        return self.store.redactor

    def record(self, call: CallRecord) -> None:
        """Hand one call to the store's recorder as soon as it happened."""
        self.call_count += 1
        self.store.add_call(self.run_id, call)


def _usable(route: Route) -> None:
    """Refuse, before any request and without showing it, a key no server could accept (whitespace, control
    characters, quotes, 'Bearer ') and a base URL that cannot be one."""
    findings = check_key(route.key()) if route.api_key is not None else []
    if findings:
        raise ConfigError(f"{findings[0].message} (in {route.api_key_env})",
                          fix=findings[0].fix.replace("NAME", route.api_key_env or "NAME"))
    unusable = url_problem(route.base_url) if route.base_url else None
    if unusable is not None:
        raise ConfigError(f"route {route.name!r}: {unusable.message}", fix=unusable.fix)


def _served(route: Route, serve: Serve | None, stack: contextlib.ExitStack, *, fallback: bool) -> tuple[Route, str]:
    if serve is None:
        raise TypeError(f"route {route.name!r} is emulated: open_route needs `serve` (api.py's serves the emulator)")
    url = stack.enter_context(serve(route, fallback=fallback))
    return route.model_copy(update={"base_url": url}), url


@contextmanager
def open_route(name: str | None = None, *, route: Route | None = None, serve: Serve | None = None,
               diagnose_key: bool = False, refresh_profile: bool = False) -> Iterator[RouteContext]:
    """The route `name` (or `route`) ready to call for the `with` block: checked, served by the emulator when it is
    emulated (its fallbacks too), its profile resolved by the one rule (client.routeprofile; `refresh_profile` asks
    the route afresh, as `doctor` does). `diagnose_key` lets a broken key or URL through, for `doctor` to diagnose."""
    from k2probe.client.routeprofile import resolve_profile

    route = route or resolve_route(name, load_file())
    if not diagnose_key:
        _usable(route)
    remember(route.key())
    notices: list[str] = []
    with contextlib.ExitStack() as stack:  # whatever started is stopped, in reverse, even when a later step fails
        url: str | None = None
        if route.emulated:
            route, url = _served(route, serve, stack, fallback=False)
            notices.append(EMULATOR_NOTICE.format(url=url))
        fallbacks: list[tuple[Route, Profile]] = []
        for other_name in route.fallback:  # each fallback route ready to take over (its own emulator when emulated)
            other = resolve_route(other_name, load_file())
            if other.emulated:
                other, _ = _served(other, serve, stack, fallback=True)
            remember(other.key())
            other_choice = resolve_profile(other)
            if (warning := other_choice.notice(other.name, other.model)) is not None:
                notices.append(warning)
            fallbacks.append((other, other_choice.profile))
        choice = resolve_profile(route, refresh=refresh_profile)
        if (warning := choice.notice(route.name, route.model)) is not None:
            notices.append(warning)
        yield RouteContext(route, choice, notices, url, fallbacks)


def route_snapshot(route: RouteContext) -> dict[str, Any]:
    """What a run keeps of a route it ran on: the route (key masked), its profile and how the profile was chosen."""
    return {"route": route.route.public(), "profile": route.profile.name, "profile_how": route.choice.how,
            "profile_source": route.choice.source()}


@contextmanager
def open_run(command: str, route: RouteContext, *, config: dict[str, Any] | None = None) -> Iterator[RunContext]:
    """A `command` run on `route` in the store for the `with` block, started with the route, its profile and `config`;
    finished at the end with its summary (`interrupted` on Ctrl-C, `error` on an exception), then the store closed."""
    from k2probe.recording.store import Store

    store = Store(redactor=Redactor([route.route.key()]))
    try:
        snapshot = {**route_snapshot(route), **(config or {})}
        run = RunContext(store, store.start_run(command, route.route.name, snapshot), command)
        status = "error"
        try:
            yield run
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            store.finish_run(run.run_id, status, {"calls": run.call_count, **run.summary})
    finally:
        store.dispose()
