"""`k2probe proxy`: a local /v1 endpoint for the team's own client — its requests checked, refused or repaired, its
workflow measured and recorded as a `proxy` run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer

from k2probe.cli.app import JsonOpt, RouteOpt, _finite, _notices, app, render
from k2probe.core.errors import UsageError

if TYPE_CHECKING:
    from rich.live import Live

    from k2probe.proxy.app import Handled, Mode
    from k2probe.proxy.run import ProxyOutcome

MODES = ("observe", "enforce", "repair")


def _listen(listen: str, allow_remote: bool) -> tuple[str, int]:
    """HOST:PORT, loopback unless --allow-remote (the proxy spends the route's key for whoever reaches it)."""
    from k2probe.core.netaddr import is_loopback
    from k2probe.emulator.server import check_port

    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {listen!r} is not HOST:PORT", fix="e.g. --listen 127.0.0.1:8787")
    if not is_loopback(host) and not allow_remote:
        raise UsageError(f"--listen {host} would serve the proxy (and spend the route's key) beyond this machine",
                         fix="listen on 127.0.0.1, or add --allow-remote with a --token of your own")
    check_port(host, int(port_text))
    return host, int(port_text)


def _finding_line(handled: Handled) -> None:
    for f in handled.findings:
        refusal = " — would be a 400 at Moonshot" if f.would_400 else ""
        done = " (repaired)" if f.repaired else " (refused here)" if handled.refused and f.would_400 else ""
        render.err.print(render.shown(f"request {handled.number} ({handled.label}): {f.kind} at "
                                      f"{f.pointer or 'the URL'}{refusal}{done}: {f.message}", "yellow"))
        render.err.print(render.shown(f"  fix: {f.fix}", "dim"))


def _print_outcome(result: ProxyOutcome) -> None:
    render.out.print(render.shown(f"proxy run {result.run_id[:8]} ({result.mode}, {result.status}): "
                                  f"{result.requests} requests in {result.sessions} sessions, "
                                  f"{len(result.findings)} findings"), style="bold")
    for kind, n in result.findings_by_kind.items():
        render.out.print(render.shown(f"  {kind}: {n}"))
    if result.latency.n:
        render.out.print(render.shown(f"  latency p50 {result.latency.p50_ms:.0f} ms · p99 "
                                      f"{result.latency.p99_ms:.0f} ms (n={result.latency.n})"))
    render.notice(f"run recorded: `k2probe show {result.run_id[:8]}`; review a session with `k2probe review`")


@app.command()
def proxy(route: RouteOpt = None,
          listen: Annotated[str, typer.Option("--listen", envvar="K2PROBE_PROXY_LISTEN", metavar="HOST:PORT",
                                              help="where the team's client connects (its base URL: "
                                                   "http://HOST:PORT/v1)")] = "127.0.0.1:8787",
          mode: Annotated[str, typer.Option("--mode", envvar="K2PROBE_PROXY_MODE", metavar="MODE",
                                            help="observe (forward and report), enforce (answer a request Moonshot "
                                                 "would refuse with its error, locally) or repair (fix what can be "
                                                 "fixed honestly)")] = "observe",
          token: Annotated[str | None, typer.Option("--token", envvar="K2PROBE_PROXY_TOKEN", metavar="TOKEN",
                                                    help="the key clients must send (default: any; theirs is never "
                                                         "forwarded)")] = None,
          duration: Annotated[float | None, typer.Option("--duration", envvar="K2PROBE_PROXY_DURATION", min=0.1,
                                                         max=10_000_000, callback=_finite, metavar="S",
                                                         help="serve this many seconds, then finish (default: "
                                                              "until Ctrl-C)")] = None,
          allow_remote: Annotated[bool, typer.Option("--allow-remote", envvar="K2PROBE_PROXY_ALLOW_REMOTE",
                                                     help="listen on a non-loopback address (give a --token)")]
          = False,
          as_json: JsonOpt = False) -> None:
    """A local OpenAI-compatible endpoint for your own client: checks, refuses or repairs its requests, records them."""
    from k2probe.api import command_contexts
    from k2probe.core.redact import remember
    from k2probe.proxy.run import serve

    if mode not in MODES:
        raise UsageError(f"--mode {mode!r} is not one of {', '.join(MODES)}", fix="e.g. --mode observe")
    if allow_remote and not is_set(token):
        raise UsageError("--allow-remote without a --token would let anyone who can reach it spend the route's key",
                         fix="add --token \"$(openssl rand -hex 16)\" and give it to your client as its API key")
    host, port = _listen(listen, allow_remote)
    remember(token)
    config = {"mode": mode, "listen": f"{host}:{port}", "token": bool(token)}
    with command_contexts("proxy", route, config=config) as (routed, run):
        _notices(routed.notices)
        live = None if as_json else _live()
        result = serve(routed, run, mode=cast("Mode", mode), host=host, port=port, token=token or None, duration_s=duration,
                       on_started=lambda url: render.notice(f"proxy ({mode}) for route {routed.route.name} on {url} "
                                                            "— point your client's base URL there; Ctrl-C ends it"),
                       on_handled=None if as_json else _finding_line,
                       tick=None if live is None else lambda stats: live.update(render.shown(stats.line(), "dim")))
        if live is not None:
            live.stop()
        run.summary = result.summary()
        if as_json:
            render.emit_json(result.model_dump(mode="json"), run.redactor)
        else:
            _print_outcome(result)
        if result.status == "interrupted":
            raise KeyboardInterrupt  # the run is marked interrupted; k2probe exits 130 (143 on SIGTERM)


def is_set(token: str | None) -> bool:
    return bool(token and token.strip())


def _live() -> Live:
    from rich.live import Live

    live = Live(render.shown("waiting for requests…", "dim"), console=render.err, refresh_per_second=2,
                transient=True)
    live.start()
    return live
