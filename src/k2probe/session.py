"""One command's working context: the resolved route (starting the emulator when needed), its profile, store and run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from k2probe.client.routeprofile import resolve_profile
from k2probe.client.transport import RetryPolicy, Transport
from k2probe.core.config import Route, check_key, load_file, resolve_route, url_problem
from k2probe.core.errors import ConfigError
from k2probe.core.profiles import Profile, ProfileChoice
from k2probe.core.records import CallRecord
from k2probe.core.redact import Redactor, remember
from k2probe.emulator import EmulatorServer, EmulatorSettings
from k2probe.recording.store import Store

EMULATOR_NOTICE = ("no API key or base URL configured: using the built-in Kimi emulator on {url} "
                   "(numbers describe the pipeline, not the model)")


@dataclass
class Session:
    """What an activity needs: route, profile, store, the current run, and notices to show the user."""

    command: str
    route: Route
    profile: Profile
    store: Store
    run_id: str
    redactor: Redactor
    emulator: EmulatorServer | None = None
    notices: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    call_count: int = 0
    profile_how: str = "configured"  # how the profile was chosen (core.profiles: configured, model id, …)
    profile_choice: ProfileChoice | None = None  # the profile with how it was found (client.routeprofile)
    fallbacks: list[tuple[Route, Profile]] = field(default_factory=list)

    def record(self, call: CallRecord) -> None:
        """Hand one call to the store's recorder as soon as it happened (the session keeps only the count)."""
        self.call_count += 1
        self.store.add_call(self.run_id, call)

    def transport(self, *, policy: RetryPolicy | None = None, concurrency: int | None = None) -> Transport:
        fallbacks = [Transport(route, profile, on_call=self.record, policy=policy, fallback_from=self.route.name)
                     for route, profile in self.fallbacks]
        return Transport(self.route, self.profile, on_call=self.record, policy=policy, concurrency=concurrency,
                         fallbacks=fallbacks)


def _serve(route: Route, stack: contextlib.ExitStack, settings: EmulatorSettings | None = None
           ) -> tuple[Route, EmulatorServer]:
    """Start the built-in emulator for an emulated route (stopped when `stack` closes); the route now points at it."""
    server = EmulatorServer(settings or EmulatorSettings(api_key=route.key(), personality=route.personality)).start()
    stack.callback(server.stop)
    return route.model_copy(update={"base_url": server.base_url}), server


@contextmanager
def open_session(command: str, route_name: str | None = None, *, emulator: EmulatorSettings | None = None,
                 config_snapshot: dict[str, Any] | None = None, route: Route | None = None,
                 diagnose_key: bool = False, join: tuple[Store, str] | None = None) -> Iterator[Session]:
    """Resolve the route, start the emulator if the route is emulated, open the store and a run; close all at the end.
    A key no server could accept (whitespace, control characters, quotes, 'Bearer ') is refused here, before any
    request and without being shown, unless the command's job is to diagnose it (`doctor`). `join` = (store, run id)
    makes this route's session part of a run another session opened (an evaluation over several routes)."""
    route = route or resolve_route(route_name, load_file())
    findings = check_key(route.key()) if route.api_key is not None and not diagnose_key else []
    if findings:
        raise ConfigError(f"{findings[0].message} (in {route.api_key_env})",
                          fix=findings[0].fix.replace("NAME", route.api_key_env or "NAME"))
    unusable = url_problem(route.base_url) if route.base_url and not diagnose_key else None
    if unusable is not None:
        raise ConfigError(f"route {route.name!r}: {unusable.message}", fix=unusable.fix)
    redactor = Redactor([route.key()])
    notices: list[str] = []
    with contextlib.ExitStack() as stack:  # whatever opened is closed, in reverse, even when a later open fails
        server: EmulatorServer | None = None
        if route.emulated:
            route, server = _serve(route, stack, emulator)
            notices.append(EMULATOR_NOTICE.format(url=server.base_url))
        fallbacks: list[tuple[Route, Profile]] = []
        for name in route.fallback:  # each fallback route ready to take over (its own emulator when emulated)
            other = resolve_route(name, load_file())
            if other.emulated:
                other, _ = _serve(other, stack)
            remember(other.key())
            other_choice = resolve_profile(other)
            if (warning := other_choice.notice(other.name, other.model)) is not None:
                notices.append(warning)
            fallbacks.append((other, other_choice.profile))
        # the one rule for a route's profile; doctor asks the route afresh (it is where a stale inference is fixed)
        choice = resolve_profile(route, refresh=command == "doctor")
        profile = choice.profile
        warning = choice.notice(route.name, route.model)
        if warning:
            notices.append(warning)
        if join is not None:
            store, run_id = join
            remember(route.key())
            yield Session(command, route, profile, store, run_id, store.redactor, server, notices,
                          profile_how=choice.how, profile_choice=choice, fallbacks=fallbacks)
            return
        store = Store(redactor=redactor)
        stack.callback(store.dispose)
        snapshot = {"route": route.public(), "profile": profile.name, "profile_how": choice.how,
                    "profile_source": choice.source(),
                    **(config_snapshot or {})}
        run_id = store.start_run(command, route.name, snapshot)
        session = Session(command, route, profile, store, run_id, redactor, server, notices, profile_how=choice.how,
                          profile_choice=choice, fallbacks=fallbacks)
        status = "error"
        try:
            yield session
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            store.finish_run(run_id, status, {"calls": session.call_count, **session.summary})
