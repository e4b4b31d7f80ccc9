"""What `k2probe proxy` adds to a client's TTFT (streamed) and to a non-streamed call's latency, at 100 concurrent
requests against the emulator, measured against the same client going direct — and beside it a real LiteLLM proxy,
the floor of any relay on this machine (bench/tcp_pipe.py: a byte pipe in Python), and, with --compare-src, the proxy
of another checkout, all measured the same way. Ratios in one run: the targets take turns, round after round, and
each figure is the median over the rounds of that target's p50 / p99.

Run: python bench/bench_proxy.py [--concurrency 100] [--requests 400] [--rounds 3] [--ttft-ms 100] [--itl-ms 20]
                                 [--no-litellm] [--no-pipe] [--compare-src OTHER_CHECKOUT/src]
Each measured step follows an unmeasured one of `concurrency` requests, so every relay's pool of connections to the
route is warm, as in use (the emulator closes a connection idle for 5 s, and the targets take turns for longer).
--itl-ms 20 is a model decoding about 50 tokens a second; --itl-ms 2 is a stress of ten times the chunks.
It also says the CPU time each proxy spent per request it relayed (Linux: /proc stat of its process and its
children — k2probe's store writer), streamed and not.
The emulator, the proxy (`k2probe proxy`, recording to a scratch store, as a user runs it), LiteLLM ($K2PROBE_LITELLM,
its `openai/` provider) and the client (`k2probe bench`, kernel-stamped reads) each run in processes of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, start_emulator

KEY = "sk-k2probe-emulator"
MASTER = "sk-litellm-master-0000"


def _wait(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited before it listened on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listened on {port} within {seconds:.0f} s")


def start_proxy(upstream: str, home: str, src: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`k2probe proxy` in front of `upstream` — this checkout's, or the one whose sources are at `src`."""
    port = free_port()
    env = {**os.environ, "AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": upstream, "K2PROBE_HOME": home}
    if src is not None:
        env["PYTHONPATH"] = src
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "proxy", "--listen", f"127.0.0.1:{port}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port, process, 60)
    return process, f"http://127.0.0.1:{port}/v1"


def start_pipe(upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    route_port = upstream.rsplit(":", 1)[1].split("/", 1)[0]
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("tcp_pipe.py")), str(port), route_port],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port, process, 30)
    return process, f"http://127.0.0.1:{port}/v1"


def start_litellm(upstream: str, folder: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    program = os.environ.get("K2PROBE_LITELLM") or shutil.which("litellm")
    if not program or not Path(program).is_file():
        return None
    config = folder / "litellm.yaml"
    config.write_text("model_list:\n  - model_name: kimi-openai\n    litellm_params:\n"
                      f"      model: openai/kimi-k2.7-code\n      api_base: {upstream}\n      api_key: {KEY}\n"
                      f"general_settings:\n  master_key: {MASTER}\n")
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    process = subprocess.Popen([program, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port, process, 180)
    return process, f"http://127.0.0.1:{port}/v1"


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process (its threads included) and its children alive now (the proxy's store writer)
    have spent so far; None where /proc cannot say."""
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])
    for entry in Path("/proc").iterdir():
        child = _stat(int(entry.name)) if entry.name.isdigit() else None
        if child is not None and int(child[1]) == pid:
            ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(base_url: str, key: str, model: str, stream: bool, args: argparse.Namespace,
            home: str) -> tuple[float, float, int]:
    """p50 and p99 (ms) of TTFT (streamed) or end-to-end latency (not), and n, from one `k2probe bench` step."""
    env = {**os.environ, "AI_GATEWAY_API_KEY": key, "AI_GATEWAY_BASE_URL": base_url, "KIMI_CODING_MODEL": model,
           "KIMI_CODING_PROFILE": "kimi-k2.7-code", "K2PROBE_HOME": home}
    done = subprocess.run([sys.executable, "-m", "k2probe", "bench", "--concurrency", str(args.concurrency),
                           "--requests", str(args.requests), "--max-tokens", "32", "--workers", "1",
                           "--stream" if stream else "--no-stream", "--json"],
                          env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"k2probe bench failed against {base_url}: {done.stderr[-600:]}")
    step = json.loads(done.stdout)["steps"][0]
    figures = step["ttft_ms"] if stream else step["e2e_ms"]
    if step["failed"]:
        print(f"  note: {step['failed']} failed requests against {base_url}", file=sys.stderr)
    return float(figures["p50"]), float(figures["p99"]), int(figures["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--itl-ms", type=float, default=20.0)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-pipe", action="store_true", help="leave out the byte pipe (the floor of any relay)")
    parser.add_argument("--compare-src", help="also measure the proxy of the checkout whose sources are here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="k2probe-bench-proxy-"))
    home = str(folder / "home")
    started: list[subprocess.Popen[bytes]] = []
    try:
        emulator, upstream = start_emulator("--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms))
        started.append(emulator)
        proxy, proxied = start_proxy(upstream, home)
        started.append(proxy)
        targets = {"direct": (upstream, KEY, "kimi-k2.7-code"), "k2probe proxy": (proxied, KEY, "kimi-k2.7-code")}
        servers = {"k2probe proxy": proxy.pid}
        if args.compare_src:
            other, other_url = start_proxy(upstream, str(folder / "other-home"), args.compare_src)
            started.append(other)
            targets["compared proxy"] = (other_url, KEY, "kimi-k2.7-code")
            servers["compared proxy"] = other.pid
        if not args.no_pipe:
            pipe, piped = start_pipe(upstream)
            started.append(pipe)
            targets["TCP pipe"] = (piped, KEY, "kimi-k2.7-code")
            servers["TCP pipe"] = pipe.pid
        litellm = None if args.no_litellm else start_litellm(upstream, folder)
        if litellm is not None:
            started.append(litellm[0])
            targets["LiteLLM proxy"] = (litellm[1], MASTER, "kimi-openai")
        if litellm is not None:
            servers["LiteLLM proxy"] = litellm[0].pid
        results: dict[tuple[str, bool], list[tuple[float, float, int]]] = {}
        cpu_ms: dict[tuple[str, bool], list[float]] = {}  # a proxy's CPU per request it relayed
        for round_ in range(args.rounds):
            for stream in (True, False):
                for name, (url, key, model) in targets.items():
                    warm = argparse.Namespace(**{**vars(args), "requests": args.concurrency})
                    measure(url, key, model, stream, warm, home)  # the relay's connections to the route opened
                    before = cpu_seconds(servers[name]) if name in servers else None
                    results.setdefault((name, stream), []).append(measure(url, key, model, stream, args, home))
                    after = cpu_seconds(servers[name]) if name in servers else None
                    if before is not None and after is not None:
                        cpu_ms.setdefault((name, stream), []).append((after - before) * 1000 / args.requests)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        print(f"{args.concurrency} concurrent requests, {args.requests} a step, emulator TTFT {args.ttft_ms:g} ms, "
              f"ITL {args.itl_ms:g} ms, median of {args.rounds} rounds")
        for stream, what in ((True, "TTFT (streamed)"), (False, "latency (not streamed)")):
            base50 = statistics.median(r[0] for r in results[("direct", stream)])
            base99 = statistics.median(r[1] for r in results[("direct", stream)])
            print(f"\n{what}:")
            print(f"  {'target':<15} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10} {'CPU ms/req':>10}")
            for name in targets:
                p50 = statistics.median(r[0] for r in results[(name, stream)])
                p99 = statistics.median(r[1] for r in results[(name, stream)])
                cpu = cpu_ms.get((name, stream))
                per = f"{statistics.median(cpu):10.2f}" if cpu else f"{'':>10}"
                print(f"  {name:<15} {p50:8.1f} {p99:8.1f} {p50 - base50:+10.1f} {p99 - base99:+10.1f} {per}")
    finally:
        for process in started:
            process.send_signal(signal.SIGINT)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
