"""The whole seed path in one go: doctor, smoke, streaming, screenshot review, agent task, snippets. Each step's
result is handed to `on_step` as soon as it is known (the CLI prints it; report/quickstart.py renders it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from k2probe.agent import AgentLimits, AgentTask, run_agent
from k2probe.client.media import load_media
from k2probe.client.sample_media import CHECKOUT_PROMPT, checkout_screenshot
from k2probe.contexts import RouteContext, RunContext
from k2probe.core.config import home
from k2probe.core.guide import streaming_request
from k2probe.core.records import figures, figures_line
from k2probe.diagnose.chat import chat_request, run_chat
from k2probe.diagnose.doctor import run_doctor
from k2probe.diagnose.smoke import run_smoke
from k2probe.diagnose.snippets import EXTENSIONS, LANGS, node_runnable, run_snippet
from k2probe.diagnose.snippets import render as render_snippet
from k2probe.sandbox.isolation import SandboxUnavailable, isolation
from k2probe.tasks.shipped import find_task


@dataclass
class Step:
    """One step's outcome: `pass`, `warn` (done, with a caveat, or skipped for a reason), or `fail`."""

    id: str
    status: str  # pass | warn | fail
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuickstartResult:
    route: str
    steps: list[Step]
    report: str | None = None

    @property
    def ok(self) -> bool:
        return all(step.status != "fail" for step in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {"route": self.route, "ok": self.ok, "report": self.report, "steps": [asdict(s) for s in self.steps]}


async def _doctor(routed: RouteContext, run: RunContext) -> Step:
    result = await run_doctor(routed, run, {})
    warns = [c.id for c in result.checks if c.status == "warn"]
    status = "fail" if result.diagnosis != "ok" else ("warn" if warns else "pass")
    detail = f"diagnosis {result.diagnosis}; {len(result.checks)} checks" + (f", warnings: {warns}" if warns else "")
    return Step("doctor", status, detail, result.as_json())


async def _smoke(routed: RouteContext, run: RunContext) -> Step:
    result = await run_smoke(routed, run)
    if result.known_good is None:
        failure = result.outcome.failure
        return Step("smoke", "fail", failure.line() if failure else "empty answer")
    return Step("smoke", "pass", f"{figures_line(result.outcome.last)}; known-good saved to {result.path}",
                figures(result.outcome.last))


async def _streaming(routed: RouteContext, run: RunContext) -> Step:
    result = await run_chat(routed, run, streaming_request(routed.route.model), purpose="quickstart: streaming")
    if result.outcome.failure is not None:
        return Step("streaming", "fail", result.outcome.failure.line())
    return Step("streaming", "pass", figures_line(result.outcome.last), figures(result.outcome.last))


async def _multimodal(routed: RouteContext, run: RunContext) -> Step:
    """The guide's first multimodal test: a screenshot review, with a screenshot k2probe draws itself."""
    path = home() / "samples" / "checkout-screen.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(checkout_screenshot())
    media = [load_media(path, "image", routed.profile.media)]
    request = chat_request(routed.route.model, CHECKOUT_PROMPT, max_tokens=2048)
    result = await run_chat(routed, run, request, media=media, purpose="quickstart: screenshot review")
    if result.outcome.failure is not None:
        return Step("multimodal", "fail", result.outcome.failure.line())
    shown = media[0].record()
    detail = (f"{shown['mime']} {shown['width']}×{shown['height']} ({shown['bytes']} bytes, {shown['delivery']}); "
              f"{figures_line(result.outcome.last)}")
    return Step("multimodal", "pass" if result.outcome.content else "fail", detail,
                {**figures(result.outcome.last), "media": shown, "answer": result.outcome.content[:2000]})


async def _agent(routed: RouteContext, run: RunContext) -> Step:
    """One shipped task (the guide's parse_total) through the tool-calling loop, verified by hidden tests."""
    task = find_task("parse-total")
    try:
        iso = isolation()
    except SandboxUnavailable as exc:  # fail closed: no isolation, no model-written code run; the rest still counts
        return Step("agent", "warn", f"skipped: {exc.message} — {exc.fix}", {"skipped": exc.line()})
    result = await run_agent(routed, run, AgentTask.from_suite(task), AgentLimits(max_steps=20), iso=iso)
    data = result.as_json()
    kept = all(flag is not False for flag in data["reasoning_preserved"])
    detail = (f"{task.id}: {result.verification.reason}; {data['steps']} steps, ended {data['end_reason']}, "
              f"reasoning_content {'kept' if kept else 'DROPPED'} on every step; sandbox {iso.sandbox}; "
              f"trajectory {data['trajectory']}")
    status = "warn" if result.verification.status == "error" else ("pass" if result.passed and kept else "fail")
    return Step("agent", status, detail,
                {k: data[k] for k in ("steps", "end_reason", "tool_call_failures", "reasoning_preserved",
                                      "prompt_tokens", "completion_tokens", "cost_usd", "trajectory", "isolation")})


async def _snippets(routed: RouteContext, run: RunContext) -> Step:
    record = run.store.known_good(routed.route.name)
    if record is None:
        return Step("snippets", "fail", "no known-good record to replay (smoke failed)")
    folder = home() / "snippets" / routed.route.name
    folder.mkdir(parents=True, exist_ok=True)
    key_env = record.get("api_key_env") or "AI_GATEWAY_API_KEY"
    env = {**os.environ, "AI_GATEWAY_BASE_URL": routed.route.base_url or "", key_env: routed.route.key(),
           "KIMI_CODING_MODEL": routed.route.model}
    results: dict[str, str] = {}
    status = "pass"
    for lang in LANGS:
        path = folder / f"known_good.{EXTENSIONS[lang]}"
        path.write_text(render_snippet(record, lang), encoding="utf-8")
        why_not = node_runnable(folder) if lang == "node" else None
        if why_not:
            results[lang] = f"written, not run: {why_not}"
            status = "warn" if status == "pass" else status
            continue
        code, stdout, _ = await asyncio.to_thread(run_snippet, path, lang, env)
        results[lang] = "ran: answer received" if code == 0 and stdout.strip() else f"failed (exit {code})"
        if code != 0 or not stdout.strip():
            status = "fail"
    detail = "; ".join(f"{lang} {text}" for lang, text in results.items()) + f" — in {folder}"
    return Step("snippets", status, detail, {"folder": str(folder), **results})


STEPS: list[Callable[[RouteContext, RunContext], Awaitable[Step]]] = [_doctor, _smoke, _streaming, _multimodal, _agent,
                                                                    _snippets]
OnStep = Callable[[Step], None]


def run_quickstart(routed: RouteContext, run: RunContext, *, on_step: OnStep | None = None) -> QuickstartResult:
    """Run every step on the route `routed`, recorded in `run`; `on_step` gets each step as it ends."""
    result = QuickstartResult(routed.route.name, [])

    async def steps() -> None:
        for step_fn in STEPS:
            step = await step_fn(routed, run)
            result.steps.append(step)
            if on_step is not None:
                on_step(step)

    asyncio.run(steps())
    run.summary = {"ok": result.ok}
    return result
