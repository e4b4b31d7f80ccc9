"""`k2probe view` on a large store: a synthetic evaluation run of 10,000 samples and 100,000 calls (bench_store's),
served by the real command, each page asked for over loopback HTTP; on SQLite, and on PostgreSQL with `--postgres`.

Run: python bench/bench_view.py [--calls 100000] [--steps 10] [--requests 30] [--postgres]

Prints, per page kind, the median and p95 response time with n (each page asked for `--requests` times, with filters,
sorts and pages varied), the first view of the run (its metrics computed; later views reuse them until the run
changes), the viewer's peak RSS (VmHWM), and the time to render a sample whose answer is 100 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy import update

from bench_store import _populate
from k2probe.recording.schema import SampleRow
from k2probe.recording.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "k2probe", "view", "--port", "0"], env=env, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    line = process.stderr.readline()
    found = re.search(r"on (http://\S+)/", line)
    if not found:
        sys.exit(f"the viewer did not start: {line}{process.stderr.read()[-400:]}")
    return process, found.group(1)


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _timed(http: httpx.Client, path: str, params: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    response = http.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000.0
    if response.status_code != 200:
        sys.exit(f"{path} {params}: HTTP {response.status_code} {response.text[:300]}")
    return elapsed


def _line(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{label:<34} median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ordered)})"


def measure(url_env: dict[str, str], calls: int, steps: int, requests: int) -> None:
    os.environ.update(url_env)
    started = time.perf_counter()
    store = Store()
    run_id = _populate(store, calls, steps)
    samples = store.samples(run_id)
    big = samples[0].id
    with store.engine.begin() as connection:  # one answer of 100 MB
        connection.execute(update(SampleRow).where(SampleRow.id == big).values(completion="x = 1\n" * 17_500_000))
    for _ in range(20):  # other runs for the runs page
        store.finish_run(store.start_run("doctor", "direct", {"n": str(uuid.uuid4())}), "finished", {})
    store.dispose()
    print(f"store: {calls} calls in {len(samples)} samples, written in {time.perf_counter() - started:.1f} s")
    process, base = _start({**os.environ, **url_env})
    rng = random.Random(7)
    try:
        with httpx.Client(base_url=base, timeout=120) as http:
            _timed(http, "/")  # the first page loads the templates
            cold_ms = _timed(http, f"/runs/{run_id}")  # the first view of a run computes its metrics, then kept
            results = {
                "runs page": [_timed(http, "/", {"offset": str(rng.choice([0, 0, 10]))}) for _ in range(requests)],
                "run page (first page)": [_timed(http, f"/runs/{run_id}") for _ in range(requests)],
                "run page (filter, sort, any page)": [
                    _timed(http, f"/runs/{run_id}", {"outcome": rng.choice(["passed", "failed", "error"]),
                                                     "sort": rng.choice(["task", "latency", "cost"]),
                                                     "order": rng.choice(["asc", "desc"]),
                                                     "offset": str(50 * rng.randrange(0, 40))})
                    for _ in range(requests)],
                "run page (text search)": [_timed(http, f"/runs/{run_id}", {"q": f"task-{rng.randrange(10_000)}"})
                                           for _ in range(requests)],
                "sample page": [_timed(http, f"/runs/{run_id}/samples/{rng.choice(samples).id}")
                                for _ in range(requests)],
            }
            big_ms = _timed(http, f"/runs/{run_id}/samples/{big}")
        for label, times in results.items():
            print(_line(label, times))
        print(f"{'run page, first view (metrics)':<34} {cold_ms:7.1f} ms (n=1)")
        print(f"{'sample with a 100 MB answer':<34} {big_ms:7.1f} ms (n=1)")
        print(f"viewer peak RSS {_peak_mb(process.pid):.0f} MB")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL server (Debian postgresql)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="k2probe-bench-view-")
    env = {"K2PROBE_HOME": home}
    with ExitStack() as stack:
        if args.postgres:
            from tests.pg import postgres_server

            env["K2PROBE_DB_URL"] = stack.enter_context(postgres_server())
        print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}")
        measure(env, args.calls, args.steps, args.requests)
    print(f"reproduce: {sys.executable} bench/bench_view.py --calls {args.calls} --steps {args.steps} "
          f"--requests {args.requests}{' --postgres' if args.postgres else ''}")


if __name__ == "__main__":
    main()
