"""Commands that serve or load a route: bench, emulator."""

from __future__ import annotations

import contextlib
import math
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from k2probe.cli.app import (
    JsonOpt,
    RouteOpt,
    _finite,
    _notices,
    app,
    render,
)
from k2probe.core.errors import UsageError
from k2probe.core.personalities import PERSONALITIES
from k2probe.emulator.settings import FAULT_KINDS

if TYPE_CHECKING:
    from k2probe.load.live import Progress


def _numbers(text: str | None, kind: type, option: str) -> list[Any]:
    if not text:
        return []
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: not a list of numbers", fix=f"e.g. {option} 1,8,32") from exc
    if not values or any(not math.isfinite(v) or v <= 0 or v > 100_000 for v in values):
        raise UsageError(f"{option} {text!r}: each value must be a positive number up to 100000",
                         fix=f"e.g. {option} 1,8,32")
    return values


def _auto_help() -> str:
    from k2probe.load.sweep import RULE

    return ("closed loop: requests in flight, a sweep when several (1,8,32); auto: a saturation sweep — "
            + RULE.words() + f" (a step sends at least {RULE.requests_per_user} requests per user in flight)")


_DATASET_HELP = ('JSONL prompts, one JSON object a line: {"prompt": "…"} or {"messages": [{"role": "user", '
                 '"content": "…"}, …]}; each step cycles through them from the first, and each request is numbered '
                 "before its first user message unless --same-prompt (then the lines are sent as written, and "
                 "repeat once the file is used up)")


@app.command()
def bench(route: RouteOpt = None,
          concurrency: Annotated[str | None, typer.Option("--concurrency", help=_auto_help(),
                                                          metavar="N[,N...]|auto")] = None,
          rate: Annotated[str | None, typer.Option("--rate", help="open loop: Poisson arrivals per second, a sweep "
                                                   "when several", metavar="R[,R...]")] = None,
          requests: Annotated[int | None, typer.Option("--requests", min=1, max=10_000_000,
                                                       help="requests per step (default 100 unless --duration)",
                                                       metavar="N")] = None,
          duration: Annotated[float | None, typer.Option("--duration", min=0.1, max=86400, callback=_finite,
                                                         help="seconds per step", metavar="S")] = None,
          stream: Annotated[bool, typer.Option("--stream/--no-stream", help="stream the answers (TTFT, ITL)")] = True,
          prompt_tokens: Annotated[str | None, typer.Option(
              "--prompt-tokens", help="prompt length in tokens: N, or MEAN:STDEV drawn per request from a normal "
              "distribution (rounded, at least 1) [default: 256]", metavar="N[:STDEV]")] = None,
          max_tokens: Annotated[str, typer.Option(
              "--max-tokens", help="output budget per request: N, or MEAN:STDEV drawn per request like "
              "--prompt-tokens", metavar="N[:STDEV]")] = "64",
          dataset: Annotated[Path | None, typer.Option("--dataset", help=_DATASET_HELP, metavar="FILE")] = None,
          seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="seeds the lengths drawn and the "
                                            "open loop's arrivals: the same seed, the same requests",
                                            metavar="N")] = 0,
          warmup: Annotated[int, typer.Option("--warmup", min=0, max=100_000, help="requests sent before the first "
                                              "step and left out of every figure (0: none)", metavar="N")] = 4,
          slo: Annotated[str | None, typer.Option("--slo", help="goodput limits: ttft_ms=…,itl_ms=…,e2e_ms=…",
                                                  metavar="NAME=MS[,...]")] = None,
          workers: Annotated[int | None, typer.Option("--workers", min=1, max=64, help="client processes "
                                                      "(default: up to 4, one per core; with --executor ray, per "
                                                      "node, default 1)", metavar="W")] = None,
          html: Annotated[Path | None, typer.Option("--html", help="write the charts here", metavar="FILE")] = None,
          same_prompt: Annotated[bool, typer.Option("--same-prompt", help="send one prompt over and over (default: "
                                                    "each request numbered, so no server answers from its prompt "
                                                    "cache)")] = False,
          record_calls: Annotated[bool, typer.Option("--record-calls", envvar="K2PROBE_RECORD_CALLS",
                                                     help="store every request as a call (default: a summary row "
                                                     "per step and its histograms)")] = False,
          executor: Annotated[str, typer.Option("--executor", envvar="K2PROBE_EXECUTOR", help=(
              "where the client processes run: local (this machine) or ray (--workers on each node of a Ray "
              "cluster, each reading the route's key from its own node's api_key_env variable; pip install "
              "'k2probe[ray]')"), metavar="TEXT")] = "local",
          ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="K2PROBE_RAY_ADDRESS", help=(
              "the Ray cluster (HOST:PORT; default: the one `ray start` runs on this machine)"), metavar="ADDR")] = None,
          as_json: JsonOpt = False) -> None:
    """Load-test a route: TTFT, time to first content, ITL, TPOT, latency, throughput and goodput per step. One cheap
    request proves the route first (a wrong key, URL or model stops here: exit 2 with the fix)."""
    from k2probe.api import bench as run_bench
    from k2probe.load.shapes import Lengths
    from k2probe.report.bench import LiveStep, print_outcome, step_line

    limits: dict[str, float] = {}
    for item in (slo or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        if name.strip() not in ("ttft_ms", "itl_ms", "e2e_ms"):
            raise UsageError(f"--slo {item!r}: unknown limit", fix="use ttft_ms, itl_ms, e2e_ms, e.g. --slo ttft_ms=500")
        [number] = _numbers(value, float, "--slo " + name.strip())
        limits[name.strip().removesuffix("_ms")] = number
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor {executor!r} is not one of local, ray", fix="use --executor local or ray")
    auto = (concurrency or "").strip().lower() == "auto"
    concurrencies = [] if auto else _numbers(concurrency, int, "--concurrency")
    rates = _numbers(rate, float, "--rate")
    if auto and rates:
        raise UsageError("--concurrency auto sweeps the concurrency; --rate sweeps arrival rates",
                         fix="give one: --concurrency auto, or --rate R[,R...]")
    if requests is not None and duration is not None:
        raise UsageError("--requests and --duration both say when a step ends",
                         fix="give one: --requests N (a count) or --duration S (seconds)")
    if dataset is not None and prompt_tokens is not None:
        raise UsageError("--dataset gives the prompts; --prompt-tokens would make them up",
                         fix="give one: --dataset FILE, or --prompt-tokens N[:STDEV]")
    prompt_lengths = Lengths.parse(prompt_tokens or "256", "--prompt-tokens", 200_000)
    output_lengths = Lengths.parse(max_tokens, "--max-tokens", 100_000)
    if html is not None:
        from k2probe.core.files import check_output

        check_output(html, "--html")

    def shown(row: dict[str, Any]) -> None:
        if not as_json:
            render.notice(step_line(row, stream))

    def live(progress: Progress) -> AbstractContextManager[Any]:
        """The running step on stderr, redrawn in place, when stderr is a terminal and no --json was asked for."""
        if as_json or not render.err.is_terminal:
            return contextlib.nullcontext()
        from rich.live import Live

        return Live(LiveStep(progress), console=render.err, refresh_per_second=4, transient=True)

    outcome = run_bench(route, concurrency="auto" if auto else concurrencies, rate=rates, requests=requests,
                        duration_s=duration, stream=stream, prompt_tokens=prompt_lengths, max_tokens=output_lengths,
                        dataset=dataset, seed=seed, warmup=warmup, slo_ms=limits, unique_prompts=not same_prompt,
                        workers=workers, record_calls=record_calls, html=html, on_notices=_notices, on_step=shown,
                        live=live, executor=executor, ray_address=ray_address)
    if html is not None and not as_json:
        render.notice(f"wrote {html}")
    if as_json:
        render.emit_json(outcome.as_json())
    else:
        print_outcome(outcome)


@app.command()
def emulator(host: Annotated[str, typer.Option(envvar="K2PROBE_EMULATOR_HOST",
                                               help="address to serve on (loopback; others need --allow-remote)",
                                               metavar="TEXT")] = "127.0.0.1",
             port: Annotated[int, typer.Option(envvar="K2PROBE_EMULATOR_PORT", min=0, max=65535,
                                               help="0: any free port", metavar="N")] = 8765,
             api_key: Annotated[str, typer.Option("--api-key", envvar="K2PROBE_EMULATOR_KEY", help="the key it accepts",
                                                  metavar="TEXT")] = "sk-k2probe-emulator",
             personality: Annotated[str, typer.Option(help=f"one of {', '.join(PERSONALITIES)}",
                                                      metavar="TEXT")] = "moonshot",
             fault: Annotated[list[str] | None, typer.Option(
                 "--fault", help=f"KIND=RATE, KIND in {', '.join(FAULT_KINDS)}", metavar="TEXT")] = None,
             ttft_ms: Annotated[float, typer.Option("--ttft-ms", min=0, max=600_000, callback=_finite,
                                                   help="injected time to first token", metavar="NUMBER")] = 0.0,
             itl_ms: Annotated[float, typer.Option("--itl-ms", min=0, max=60_000, callback=_finite,
                                                  help="injected gap between tokens", metavar="NUMBER")] = 0.0,
             rpm: Annotated[int | None, typer.Option("--rpm", min=1, max=10_000_000,
                                                     help="requests per minute, then 429", metavar="N")] = None,
             max_concurrency: Annotated[int | None, typer.Option("--max-concurrency", min=1, max=1_000_000,
                                                                  help="concurrent requests, then 429", metavar="N")] = None,
             seed: Annotated[int, typer.Option("--seed", help="for the scripted slips and faults", metavar="N")] = 0,
             slip_rate: Annotated[float, typer.Option("--slip-rate", min=0, max=1, callback=_finite,
                                                     help="share of scripted agent steps that slip", metavar="NUMBER")
                                  ] = 0.0,
             wrong_rate: Annotated[float, typer.Option("--wrong-rate", min=0, max=1, callback=_finite,
                                                      help="share of HumanEval answers that are wrong",
                                                      metavar="NUMBER")] = 0.0,
             tool_fault_rate: Annotated[float, typer.Option("--tool-fault-rate", min=0, max=1, callback=_finite,
                                                           help="share of tool calls broken as vendors break them",
                                                           metavar="NUMBER")] = 0.0,
             workers: Annotated[int, typer.Option("--workers", envvar="K2PROBE_EMULATOR_WORKERS", min=1, max=64,
                                                  help="serve from this many processes (each with its own state)",
                                                  metavar="N")] = 1,
             allow_remote: Annotated[bool, typer.Option("--allow-remote", envvar="K2PROBE_EMULATOR_ALLOW_REMOTE",
                                                        help="serve on a non-loopback --host (needs an --api-key "
                                                             "of your own)")] = False,
             log: Annotated[bool, typer.Option("--log", envvar="K2PROBE_EMULATOR_LOG",
                                               help="one line per request on stderr: method, path, status and every "
                                                    "contract violation")] = False) -> None:
    """Serve the Kimi emulator on loopback."""
    from k2probe.emulator import EmulatorSettings, parse_faults, serve_forever
    from k2probe.emulator.server import check_exposure, check_port

    check_exposure(host, api_key, allow_remote)

    try:
        settings = EmulatorSettings(api_key=api_key, personality=personality, faults=parse_faults(fault or []),
                                    ttft_ms=ttft_ms, itl_ms=itl_ms, rpm=rpm, max_concurrency=max_concurrency,
                                    seed=seed, slip_rate=slip_rate, wrong_rate=wrong_rate,
                                    tool_fault_rate=tool_fault_rate, log=log)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    check_port(host, port)
    if log:
        from k2probe.emulator.server import log_requests

        log_requests()
    render.notice(f"Kimi emulator ({personality}) on http://{host}:{port}/v1 — key from --api-key")
    serve_forever(settings, host=host, port=port, workers=workers)
