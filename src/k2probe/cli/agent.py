"""What `k2probe agent` does between the CLI and the loop: pick the task, run it, show each step as it happens."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rich.syntax import Syntax
from rich.text import Text

from k2probe.agent import AgentLimits, AgentResult, AgentTask, Limits, Step, run_agent
from k2probe.contexts import RouteContext, RunContext
from k2probe.core import untrusted
from k2probe.core.errors import UsageError
from k2probe.core.results import Outcome
from k2probe.report import terminal as render
from k2probe.sandbox.executor import Executor


def choose_task(statement: str | None, repo: Path | None, test_cmd: str | None, task_ref: str | None,
                python: Path | None = None) -> AgentTask:
    """A shipped task by reference (run under k2probe's own interpreter), or the user's statement on the user's
    repository (run in the caller's environment, or with --python)."""
    if python is not None and not (python.is_file() and os.access(python, os.X_OK)):
        raise UsageError(f"--python {python} is not an executable file", fix="give the path of a Python interpreter")
    from k2probe.api import agent_task

    if task_ref:
        return agent_task(task_ref, None, test_cmd, str(python) if python else None, flag="--")
    if not statement or repo is None:
        raise UsageError("give a TASK and --repo PATH, or --task ID for a shipped task",
                         fix='e.g. k2probe agent "fix the failing test" --repo . --test-cmd "pytest -q"')
    return agent_task(statement, repo, test_cmd, str(python) if python else None, flag="--")


TEST_MARK: dict[str, tuple[str, str]] = {Outcome.PASSED: ("✔", "green"), Outcome.FAILED: ("✘", "yellow"),
                                         Outcome.ERROR: ("!", "bold red")}
VERDICT_STYLE: dict[str, str] = {Outcome.PASSED: "bold green", Outcome.FAILED: "bold red", Outcome.ERROR: "bold magenta"}


def show_step(step: Step) -> None:
    for tool in step.tools:
        mark, style = ("✘", "red") if tool.failure else TEST_MARK.get(tool.tests or Outcome.PASSED, ("✔", "green"))
        first = next((line for line in tool.result.splitlines() if line and not line.startswith("$ ")), "")
        label = f"{tool.failure}: " if tool.failure else ""
        render.out.print(render.shown(f"  step {step.index + 1:>2} {mark} {tool.name:<12} ", style),
                         render.shown(f"{label}{first[:100]}"))
    if step.error:
        render.out.print(render.shown(f"  step {step.index + 1:>2} ✘ request failed: {step.error}", "red"))
    if step.reasoning_preserved is False:
        render.out.print(Text("          reasoning_content was NOT preserved in the history sent", style="bold red"))


def show_result(result: AgentResult) -> None:
    if result.diff:
        render.out.print(Syntax(untrusted.terminal(result.diff), "diff", word_wrap=True))  # BEL, CR: visible
    v = result.verification
    render.out.print(render.shown(f"verification: {v.status} ({v.reason})", VERDICT_STYLE[v.status]))
    if result.loop.unanswered is not None:  # the route never answered usefully: nothing was verified
        render.out.print(Text("the route never answered usefully: nothing of the model's was verified or blamed "
                              "(check the route's key, URL and model)", style="magenta"))
    elif v.status == Outcome.ERROR:  # the harness failed, not the model: show the lines that prove it
        render.out.print(Text("the harness or the machine failed; the model is not blamed. Evidence:", style="magenta"))
        for line in v.proof():
            render.out.print(render.shown(f"  | {line}", "dim"))
    data = result.as_json()
    cost = "cost unknown" if data["cost_usd"] is None else f"${data['cost_usd']:.4f}"
    failures = ", ".join(f"{k} {n}" for k, n in data["tool_call_failures"].items()) or "none"
    render.out.print(render.shown(f"ended: {result.loop.end_reason} ({result.loop.detail}) · {data['steps']} steps · "
                                  f"tool-call failures: {failures} · tokens {data['prompt_tokens']} in / "
                                  f"{data['completion_tokens']} out ({data['reasoning_tokens']} reasoning) · {cost}"))
    render.notice(f"trajectory: {result.trajectory}")


def run_agent_command(routed: RouteContext, run: RunContext, task: AgentTask, limits: AgentLimits, test_timeout_s: float,
                      quiet: bool, executor: Executor) -> AgentResult:
    sandbox = Limits(wall_s=test_timeout_s, cpu_s=max(1, int(test_timeout_s)))
    iso = executor.isolation
    if not quiet:
        render.notice(f"isolation: {iso.line()}")
        for note in iso.notes:
            render.notice(f"warning: {note}")
    return asyncio.run(run_agent(routed, run, task, limits, sandbox, on_step=None if quiet else show_step,
                                 executor=executor))
