"""`k2probe bench` against the ceilings: wrk (one endpoint's limit) and an asyncio script on the openai SDK, the same
non-streaming body at the same concurrency against the same emulator (its own processes); then timing truth — the
bench's TTFT against the emulator's own stamped TTFT — at 1 and many streams.

Run: python bench/bench_load.py [--concurrency 64] [--seconds 8] [--emulator-workers 2] [--streams 1,256]

Prints requests/s for each client and the ratios (k2probe / wrk, k2probe / SDK script), then the TTFT error (|client −
server stamp|) p50 / p99 / max with n at each stream count. On a shared 2-core machine the clients and the emulator
compete for the same cores: compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import start_emulator

KEY = "sk-k2probe-emulator"
BODY = {"model": "kimi-k2.7-code", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Review this function for correctness and propose a patch. " * 8}]}


def _emulator(workers: int, ttft_ms: float, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    return start_emulator("--workers", str(workers), "--ttft-ms", str(ttft_ms), env=env)


def _k2probe(base: str, env: dict[str, str], *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "k2probe", "bench", *args, "--json"], capture_output=True, text=True,
                          env={**env, "AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": base}, check=False)
    if done.returncode != 0:
        sys.exit(f"k2probe bench failed: {done.stderr[-400:]}")
    return json.loads(done.stdout)["steps"][0]  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--emulator-workers", type=int, default=2)
    parser.add_argument("--streams", default="1,256")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env["K2PROBE_HOME"] = tempfile.mkdtemp(prefix="k2probe-bench-load-")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    server, base = _emulator(args.emulator_workers, 0, env)
    try:
        c, secs = args.concurrency, args.seconds
        wrk_rps = None
        if shutil.which("wrk"):
            script = Path(env["K2PROBE_HOME"]) / "post.lua"
            script.write_text(f"wrk.method = 'POST'\nwrk.body = [[{json.dumps(BODY)}]]\n"
                              "wrk.headers['Content-Type'] = 'application/json'\n"
                              f"wrk.headers['Authorization'] = 'Bearer {KEY}'\n")
            out = subprocess.run(["wrk", "-t2", f"-c{c}", f"-d{secs:g}s", "-s", str(script),
                                  f"{base}/chat/completions"], capture_output=True, text=True, check=False).stdout
            found = re.search(r"Requests/sec:\s+([\d.]+)", out)
            wrk_rps = float(found.group(1)) if found else None
        ours = _k2probe(base, env, "--no-stream", "--concurrency", str(c), "--duration", f"{secs:g}",
                        "--prompt-tokens", "80", "--max-tokens", "16")
        sdk = subprocess.run([sys.executable, str(Path(__file__).with_name("sdk_load.py")), base, KEY, str(c),
                              f"{secs:g}"], capture_output=True, text=True, env=env, check=False)
        sdk_rps = float(sdk.stdout.strip() or 0)
        k_rps = float(ours["rps"])  # type: ignore[arg-type]
        print(f"non-streaming, concurrency {c}, {secs:g} s each, emulator with {args.emulator_workers} workers:")
        print(f"  wrk {wrk_rps or float('nan'):.1f} req/s · k2probe bench {k_rps:.1f} req/s · openai SDK script "
              f"{sdk_rps:.1f} req/s")
        if wrk_rps:
            print(f"  k2probe / wrk = {k_rps / wrk_rps:.2f} (target ≥ 0.8)")
        if sdk_rps:
            print(f"  k2probe / SDK script = {k_rps / sdk_rps:.2f} (target ≥ 2)")
    finally:
        server.terminate()
        server.wait(timeout=20)
    server, base = _emulator(args.emulator_workers, 100, env)
    try:
        for streams in (int(s) for s in args.streams.split(",")):
            step = _k2probe(base, env, "--concurrency", str(streams), "--requests", str(max(100, streams * 2)),
                            "--max-tokens", "16")
            error = step["ttft_error_ms"]
            print(f"timing truth at {streams} streams: |TTFT − server stamp| p50 {error['p50']:.2f} · p99 "  # type: ignore[index]
                  f"{error['p99']:.2f} · max {error['max']:.2f} ms (n={error['n']}; server told 100 ms)")  # type: ignore[index]
    finally:
        server.terminate()
        server.wait(timeout=20)
    import resource

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(f"peak RSS of the largest process this run started (emulator workers included): {peak:.0f} MB")
    print(f"reproduce: {sys.executable} bench/bench_load.py --concurrency {args.concurrency} --seconds "
          f"{args.seconds:g} --emulator-workers {args.emulator_workers} --streams {args.streams}")


if __name__ == "__main__":
    main()
