"""`k2probe bench` against the ceilings: the client CPU each request costs k2probe bench, locust (FastHttpUser and
HttpUser) and wrk; requests/s of wrk, k2probe bench and an asyncio script on the openai SDK; then timing truth — the
bench's TTFT against the emulator's own stamped TTFT — at 1 and many streams. Every client sends the same
non-streaming body at the same concurrency to the same emulator (its own processes).

Run: python bench/bench_load.py [--concurrency 64] [--seconds 8] [--emulator-workers 2] [--streams 1,256]
     [--client-workers 1] [--runs 3] [--only cpu|rps|timing]

Client CPU per request: user + system CPU seconds of each client's processes (their children included) over the
requests it completed, the median of --runs runs (the clients interleaved, so a busy moment falls on each): "whole
run" includes start-up; "steady" leaves it out — (CPU of a --seconds run − CPU of a 1 s run) / (their requests'
difference). locust comes from a venv of its own (/tmp/k2probe-locust-venv, made on first use; $K2PROBE_LOCUST names
another), wrk from the system (apt-get install wrk).

Then requests/s for each client and the ratios (k2probe / wrk, k2probe / SDK script), then the TTFT error (|client −
server stamp|) p50 / p99 / max with n at each stream count, for 1-token answers (TTFT alone) and 16-token ones (where
a client that falls behind reads the first token together with later ones, and the kernel stamps a read by its last
bytes). On a shared 2-core machine the clients and the emulator compete for the same cores: the emulator is pinned to
CPU 0 and each client to CPU 1 (--no-pin lets them share); compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from common import pinned, start_emulator

KEY = "sk-k2probe-emulator"
BODY = {"model": "kimi-k2.7-code", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Review this function for correctness and propose a patch. " * 8}]}


def _emulator(workers: int, ttft_ms: float, env: dict[str, str],
              cpus: set[int] | None) -> tuple[subprocess.Popen[bytes], str]:
    return start_emulator("--workers", str(workers), "--ttft-ms", str(ttft_ms), env=env, cpus=cpus)


def _k2probe(base: str, env: dict[str, str], cpus: set[int] | None, *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "k2probe", "bench", *args, "--json"], capture_output=True, text=True,
                          env={**env, "AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": base}, check=False,
                          preexec_fn=pinned(cpus))
    if done.returncode != 0:
        sys.exit(f"k2probe bench failed: {done.stderr[-400:]}")
    return json.loads(done.stdout)["steps"][0]  # type: ignore[no-any-return]


LOCUST_VENV = Path("/tmp/k2probe-locust-venv")


def locust_program() -> str:
    """$K2PROBE_LOCUST, else locust from a venv of its own under /tmp (created on first use)."""
    given = os.environ.get("K2PROBE_LOCUST")
    if given and Path(given).is_file():
        return given
    if not (LOCUST_VENV / ".complete").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True)
        subprocess.run([str(LOCUST_VENV / "bin" / "pip"), "install", "-q", "locust"], check=True, timeout=900)
        (LOCUST_VENV / ".complete").write_text("ok\n")
    return str(LOCUST_VENV / "bin" / "locust")


def _cpu(argv: list[str], env: dict[str, str], cpus: set[int] | None) -> tuple[float, str]:
    """Run a client to its end: user + system CPU seconds of it and every process it waited for, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, preexec_fn=pinned(cpus))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-600:]}")
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done.stdout


Client = Callable[[float], tuple[float, int]]  # seconds → (CPU seconds, requests completed)


def _clients(base: str, c: int, env: dict[str, str], cpus: set[int] | None, pin: bool) -> dict[str, Client]:
    """Each client, the same body at concurrency `c` against `base`: a run of S seconds → (CPU s, requests)."""
    home = Path(env["K2PROBE_HOME"])
    script = home / "post.lua"
    script.write_text(f"wrk.method = 'POST'\nwrk.body = [[{json.dumps(BODY)}]]\n"
                      "wrk.headers['Content-Type'] = 'application/json'\n"
                      f"wrk.headers['Authorization'] = 'Bearer {KEY}'\n")
    dataset = home / "body.jsonl"  # k2probe sends BODY's messages as written (--same-prompt), max_tokens as BODY's
    dataset.write_text(json.dumps({"messages": BODY["messages"]}) + "\n")
    route = {**env, "AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": base}

    def k2probe(seconds: float) -> tuple[float, int]:
        cpu, out = _cpu([sys.executable, "-m", "k2probe", "bench", "--no-stream", "--concurrency", str(c),
                         "--duration", f"{seconds:g}", "--workers", "1", "--warmup", "0", "--dataset", str(dataset),
                         "--same-prompt", "--max-tokens", str(BODY["max_tokens"]), "--json"], route, cpus)
        return cpu, int(json.loads(out)["steps"][0]["requests"]) + 1  # and the route check

    def wrk(seconds: float) -> tuple[float, int]:
        cpu, out = _cpu(["wrk", "-t1" if pin else "-t2", f"-c{c}", f"-d{seconds:g}s", "-s", str(script),
                         f"{base}/chat/completions"], env, cpus)
        found = re.search(r"(\d+) requests in", out)
        return cpu, int(found.group(1)) if found else 0

    def locust(fast: bool) -> Client:
        def run(seconds: float) -> tuple[float, int]:
            cpu, out = _cpu([locust_program(), "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
                             "-u", str(c), "-r", str(c), "-t", f"{seconds:g}s", "--host", base, "--json",
                             "--loglevel", "ERROR"],
                            {**env, "BENCH_BODY": json.dumps(BODY), "BENCH_KEY": KEY,
                             "LOCUST_FAST": "1" if fast else "0"}, cpus)
            return cpu, sum(int(row["num_requests"]) for row in json.loads(out))
        return run

    clients: dict[str, Client] = {"k2probe bench": k2probe, "locust FastHttpUser": locust(True),
                                  "locust HttpUser": locust(False)}
    if shutil.which("wrk"):
        clients["wrk"] = wrk
    return clients


def cpu_per_request(base: str, args: argparse.Namespace, env: dict[str, str], cpus: set[int] | None,
                    pin: bool) -> None:
    """Each client's CPU per request, whole runs and steady state, the median of args.runs runs, side by side."""
    c, secs = args.concurrency, args.seconds
    whole: dict[str, list[float]] = {}
    steady: dict[str, list[float]] = {}
    rps: dict[str, list[float]] = {}
    clients = _clients(base, c, env, cpus, pin)
    for _ in range(args.runs):
        for name, client in clients.items():  # interleaved: a busy moment of the machine falls on every client
            cpu, n = client(secs)
            cpu1, n1 = client(1.0)
            whole.setdefault(name, []).append(1000 * cpu / max(1, n))
            steady.setdefault(name, []).append(1000 * (cpu - cpu1) / max(1, n - n1))
            rps.setdefault(name, []).append(n / secs)
    print(f"client CPU per request (user + system, ms), non-streaming, concurrency {c}, {secs:g} s runs, median of "
          f"{args.runs}, emulator with {args.emulator_workers} workers"
          + (" on CPU 0, each client on CPU 1:" if pin else ", all sharing every CPU:"))
    ours = statistics.median(steady["k2probe bench"])
    for name in clients:
        w, s, r = (statistics.median(v[name]) for v in (whole, steady, rps))
        print(f"  {name:<20} {w:6.3f} ms whole run · {s:6.3f} ms steady · {r:7.0f} req/s"
              + ("" if name == "k2probe bench" else f" · k2probe / {name} (steady) = {ours / s:.2f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--emulator-workers", type=int, default=2)
    parser.add_argument("--streams", default="1,256")
    parser.add_argument("--client-workers", type=int, default=1, help="k2probe bench --workers for timing truth")
    parser.add_argument("--no-pin", action="store_true", help="let the server and the clients share every CPU")
    parser.add_argument("--runs", type=int, default=3, help="runs of each client for the CPU per request (median)")
    parser.add_argument("--only", choices=("cpu", "rps", "timing"), help="one section only")
    args = parser.parse_args()
    # The same CPU budget for every client: the emulator on CPU 0, each client in turn on CPU 1. Unpinned, on a
    # 2-core machine the ratio measures how much CPU each client leaves the server (wrk, in C, leaves it almost all).
    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    server_cpus, client_cpus = ({0}, {1}) if pin else (None, None)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env["K2PROBE_HOME"] = tempfile.mkdtemp(prefix="k2probe-bench-load-")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.only in (None, "cpu"):
        server, base = _emulator(args.emulator_workers, 0, env, server_cpus)
        try:
            cpu_per_request(base, args, env, client_cpus, pin)
        finally:
            server.terminate()
            server.wait(timeout=20)
    if args.only in (None, "rps"):
        ceilings(args, env, server_cpus, client_cpus, pin)
    if args.only in (None, "timing"):
        timing_truth(args, env, server_cpus, client_cpus)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(f"peak RSS of the largest process this run started (emulator workers included): {peak:.0f} MB")
    print(f"reproduce: {sys.executable} bench/bench_load.py --concurrency {args.concurrency} --seconds "
          f"{args.seconds:g} --emulator-workers {args.emulator_workers} --streams {args.streams} "
          f"--client-workers {args.client_workers} --runs {args.runs}" + (" --no-pin" if args.no_pin else "")
          + (f" --only {args.only}" if args.only else ""))


def ceilings(args: argparse.Namespace, env: dict[str, str], server_cpus: set[int] | None,
             client_cpus: set[int] | None, pin: bool) -> None:
    """requests/s of wrk, k2probe bench and the openai SDK script, the same body at the same concurrency."""
    server, base = _emulator(args.emulator_workers, 0, env, server_cpus)
    try:
        c, secs = args.concurrency, args.seconds
        wrk_rps = None
        if shutil.which("wrk"):
            script = Path(env["K2PROBE_HOME"]) / "post.lua"
            script.write_text(f"wrk.method = 'POST'\nwrk.body = [[{json.dumps(BODY)}]]\n"
                              "wrk.headers['Content-Type'] = 'application/json'\n"
                              f"wrk.headers['Authorization'] = 'Bearer {KEY}'\n")
            out = subprocess.run(["wrk", "-t1" if pin else "-t2", f"-c{c}", f"-d{secs:g}s", "-s", str(script),
                                  f"{base}/chat/completions"], capture_output=True, text=True, check=False,
                                 preexec_fn=pinned(client_cpus)).stdout
            found = re.search(r"Requests/sec:\s+([\d.]+)", out)
            wrk_rps = float(found.group(1)) if found else None
        ours = _k2probe(base, env, client_cpus, *(["--workers", "1"] if pin else []), "--no-stream",
                        "--concurrency", str(c), "--duration", f"{secs:g}",
                        "--prompt-tokens", "80", "--max-tokens", "16")
        sdk = subprocess.run([sys.executable, str(Path(__file__).with_name("sdk_load.py")), base, KEY, str(c),
                              f"{secs:g}"], capture_output=True, text=True, env=env, check=False,
                             preexec_fn=pinned(client_cpus))
        sdk_rps = float(sdk.stdout.strip() or 0)
        k_rps = float(ours["rps"])  # type: ignore[arg-type]
        print(f"non-streaming, concurrency {c}, {secs:g} s each, emulator with {args.emulator_workers} workers"
              + (", the emulator on CPU 0 and each client on CPU 1:" if pin else ", all sharing every CPU:"))
        print(f"  wrk {wrk_rps or float('nan'):.1f} req/s · k2probe bench {k_rps:.1f} req/s · openai SDK script "
              f"{sdk_rps:.1f} req/s")
        if wrk_rps:
            print(f"  k2probe / wrk = {k_rps / wrk_rps:.2f} (target ≥ 0.8)")
        if sdk_rps:
            print(f"  k2probe / SDK script = {k_rps / sdk_rps:.2f} (target ≥ 2)")
    finally:
        server.terminate()
        server.wait(timeout=20)


def timing_truth(args: argparse.Namespace, env: dict[str, str], server_cpus: set[int] | None,
                 client_cpus: set[int] | None) -> None:
    """The bench's TTFT against the emulator's own stamp, at each stream count, 1- and 16-token answers."""
    server, base = _emulator(args.emulator_workers, 100, env, server_cpus)
    try:
        for streams in (int(s) for s in args.streams.split(",")):
            for tokens in (1, 16):
                step = _k2probe(base, env, client_cpus, "--concurrency", str(streams),
                                "--requests", str(max(100, streams * 2)),
                                "--max-tokens", str(tokens), "--workers", str(args.client_workers))
                error = step["ttft_error_ms"]
                print(f"timing truth at {streams} streams, {tokens}-token answers: |TTFT − server stamp| p50 "
                      f"{error['p50']:.2f} · p99 {error['p99']:.2f} · max {error['max']:.2f} ms (n={error['n']}; "  # type: ignore[index]
                      f"server told 100 ms; first token read late with later ones: "
                      f"{100 * (step['ttft_merged'] or 0):.0f}%)")  # type: ignore[operator]
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
