"""`k2probe audit`: what does this route change? Probes built so that a faithful Kimi route and a rewriting one answer
differently; each difference is a finding with its evidence. `doctor` runs the cheap ones (CHEAP).

A faithful Kimi route 400s a fixed parameter set to another value, 400s tool_choice "required" with thinking on, 400s a
tool-call turn sent back without its reasoning_content, returns reasoning, reports the same prompt tokens streamed and
not, and names the model it was asked for."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from k2probe.client.transport import Outcome, Transport
from k2probe.core.profiles import Profile, known_in

PING = {"role": "user", "content": "Reply with the single word: ok"}
TOOL = {"type": "function", "function": {
    "name": "lookup_symbol", "description": "Find where a Python symbol is defined.",
    "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}
OFF_VALUES = {"temperature": 0.2, "top_p": 0.5, "n": 2, "presence_penalty": 0.5, "frequency_penalty": 0.5}
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2, "info": 3}


@dataclass
class Finding:
    id: str
    severity: str  # high | medium | low | info
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""


@dataclass
class Probed:
    """One probe's result: a finding, or what the route did right."""

    check: str
    finding: Finding | None
    ok_detail: str = ""


@dataclass
class AuditResult:
    route: str
    profile: str
    probes: list[Probed]
    added_latency_ms: dict[str, Any] | None = None

    @property
    def findings(self) -> list[Finding]:
        found = [p.finding for p in self.probes if p.finding is not None]
        return sorted(found, key=lambda f: SEVERITY_RANK.get(f.severity, 9))

    @property
    def verdict(self) -> str:
        return "rewrites" if any(f.severity in ("high", "medium") for f in self.findings) else "faithful"

    def as_json(self) -> dict[str, Any]:
        return {"route": self.route, "profile": self.profile, "verdict": self.verdict,
                "findings": [asdict(f) for f in self.findings], "added_latency_ms": self.added_latency_ms,
                "passed": [{"check": p.check, "detail": p.ok_detail} for p in self.probes if p.finding is None]}


class Auditor:
    """Sends the probes through one route's transport (bodies sent as written: the sanitiser would hide the point)."""

    def __init__(self, transport: Transport, profile: Profile, model: str, *, who: str = "audit") -> None:
        self.transport, self.profile, self.model, self.who = transport, profile, model, who

    async def send(self, purpose: str, extra: dict[str, Any]) -> Outcome:
        body = {"model": self.model, "messages": [PING], "max_tokens": 512, **extra}
        return await self.transport.chat(body, purpose=f"{self.who}: {purpose}")

    # ---- cheap probes (doctor runs these) ------------------------------------------------------------------------
    async def param_swallowed(self, name: str = "temperature") -> Probed:
        value = OFF_VALUES[name]
        outcome = await self.send(f"{name} (expects a 400)", {name: value})
        if outcome.failure is None:
            return Probed(f"param:{name}", Finding(
                "param_swallowed", "high", f"the route accepted {name}={value} for a model that fixes it at "
                f"{self.profile.fixed[name]:g}: it drops or ignores fixed parameters silently",
                {"param": name, "sent": value, "status": outcome.last.status},
                "k2probe's sanitiser removes them; make sure your client does too, or your settings have no effect"))
        if outcome.failure.status == 400 and name in outcome.failure.message:
            return Probed(f"param:{name}", None, f"{name} enforced: {outcome.failure.message}")
        return Probed(f"param:{name}", Finding("param_error", "low", f"{name}={value} failed otherwise: "
                                               f"{outcome.failure.line()}", {"cause": outcome.failure.cause}))

    async def tool_choice_rewritten(self) -> Probed:
        outcome = await self.send("tool_choice required (expects a 400)",
                                  {"tools": [TOOL], "tool_choice": "required"})
        if outcome.failure is None:
            return Probed("tool_choice", Finding(
                "tool_choice_rewritten", "high", "the route accepted tool_choice='required' with thinking on, which "
                "Kimi refuses: it rewrites the request (LiteLLM turns it into an extra user message)",
                {"status": outcome.last.status, "tool_calls": bool((outcome.message or {}).get("tool_calls"))},
                "send tool_choice 'auto' or 'none' (k2probe does); do not rely on 'required' through this route"))
        if outcome.failure.status == 400 and "tool_choice" in outcome.failure.message:
            return Probed("tool_choice", None, f"tool_choice='required' refused as Kimi does: {outcome.failure.message}")
        return Probed("tool_choice", Finding("tool_choice_error", "low", outcome.failure.line(),
                                             {"cause": outcome.failure.cause}))

    async def reasoning_injected(self) -> Probed:
        history = [{"role": "user", "content": "Where is parse_total defined? Use the lookup_symbol tool."},
                   {"role": "assistant", "content": "", "tool_calls": [{
                       "id": "lookup_symbol_0", "type": "function",
                       "function": {"name": "lookup_symbol", "arguments": '{"name": "parse_total"}'}}]},
                   {"role": "tool", "tool_call_id": "lookup_symbol_0", "content": "billing/rows.py line 12"}]
        outcome = await self.send("tool turn without reasoning (expects a 400)",
                                  {"messages": history, "tools": [TOOL], "tool_choice": "auto"})
        if outcome.failure is None:
            return Probed("reasoning_in_history", Finding(
                "reasoning_injected", "high", "a tool-call turn sent back without reasoning_content was accepted: "
                "the route fills it in, so a client that drops reasoning is never told (Kimi answers 400)",
                {"status": outcome.last.status},
                "test your client directly against Moonshot, or check that it sends reasoning_content back"))
        if outcome.failure.status == 400 and "reasoning_content" in outcome.failure.message:
            return Probed("reasoning_in_history", None, f"missing reasoning refused: {outcome.failure.message}")
        return Probed("reasoning_in_history", Finding("reasoning_probe_error", "low", outcome.failure.line(),
                                                      {"cause": outcome.failure.cause}))

    # ---- the rest -------------------------------------------------------------------------------------------------
    async def answers(self) -> list[Probed]:
        """Reasoning returned, usage in the stream, usage equal streamed and not, the model named, `thinking` passed."""
        plain = await self.send("non-streamed answer", {})
        streamed = await self.send("streamed answer, usage asked", {"stream": True,
                                                                   "stream_options": {"include_usage": True}})
        bare = await self.send("streamed answer, usage not asked", {"stream": True})
        thinking = await self.send("thinking enabled", {"thinking": {"type": "enabled"}})
        out: list[Probed] = []
        if plain.failure is not None:
            return [Probed("answer", Finding("no_answer", "high", plain.failure.line(), {"cause": plain.failure.cause}))]
        if self.profile.reasoning_in_history and not plain.reasoning:
            out.append(Probed("reasoning", Finding("reasoning_dropped", "high", "the answer carries no reasoning "
                                                   "(reasoning_content or reasoning): a thinking model's reasoning is "
                                                   "dropped on the way", {"shape": plain.shape[:20]},
                                                   "use a route that passes reasoning through")))
        else:
            out.append(Probed("reasoning", None, "reasoning returned"))
        missing = [name for name, o in (("asked", streamed), ("not asked", bare))
                   if o.failure is None and not (o.usage.prompt_tokens or o.usage.completion_tokens)]
        if missing:
            out.append(Probed("stream_usage", Finding(
                "usage_missing", "medium", f"streamed answers carry no usage ({', '.join(missing)}): tokens and cost "
                "of streamed calls are unknown", {"missing_when": missing},
                "ask for stream_options.include_usage, or count streamed calls with the non-streamed figures")))
        else:
            out.append(Probed("stream_usage", None, "usage present in streams"))
        if streamed.failure is None and streamed.usage.prompt_tokens and \
                streamed.usage.prompt_tokens != plain.usage.prompt_tokens:
            out.append(Probed("usage_equal", Finding(
                "usage_rewritten", "medium", f"the same request counts {plain.usage.prompt_tokens} prompt tokens "
                f"answered whole and {streamed.usage.prompt_tokens} streamed: one of them is the route's own estimate, "
                "not the model's count", {"non_streamed": plain.usage.prompt_tokens,
                                          "streamed": streamed.usage.prompt_tokens},
                "price streamed calls from non-streamed counts, or from the provider's bill")))
        else:
            out.append(Probed("usage_equal", None, "the same prompt tokens streamed and not"))
        served = plain.served_model or ""
        named = known_in(served)
        if named is not None and named.name != self.profile.name and self.profile.name != "openai-compatible":
            out.append(Probed("model", Finding("model_substituted", "high", f"asked for {self.model!r} "
                                               f"({self.profile.name}), the answer names {served!r}",
                                               {"served_model": served})))
        else:
            out.append(Probed("model", None, f"the answer names {served or 'no model'}"))
        if thinking.failure is not None and thinking.failure.cause == "gateway_rejected_param":
            out.append(Probed("thinking", Finding("thinking_refused", "medium", "the route itself refuses the "
                                                  f"`thinking` parameter: {thinking.failure.message[:160]}",
                                                  {"status": thinking.failure.status},
                                                  "allow it in the gateway (LiteLLM: allowed_openai_params)")))
        else:
            out.append(Probed("thinking", None, "thinking={type: enabled} passed"))
        return out


async def latency_ms(transport: Transport, model: str, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        outcome = await transport.chat({"model": model, "messages": [PING], "max_tokens": 16},
                                       purpose="audit: latency")
        if outcome.failure is None:
            out.append((time.perf_counter() - started) * 1000.0)
    return out


CHEAP: tuple[Callable[[Auditor], Awaitable[Probed]], ...] = (
    Auditor.param_swallowed, Auditor.tool_choice_rewritten, Auditor.reasoning_injected)


async def audit(transport: Transport, profile: Profile, route: str, model: str, *,
                baseline: tuple[Transport, str] | None = None, rounds: int = 7) -> AuditResult:
    auditor = Auditor(transport, profile, model)
    probes: list[Probed] = []
    if profile.fixed:  # only a model that fixes parameters can show them swallowed
        for name in profile.fixed:
            probes.append(await auditor.param_swallowed(name))
    if profile.tool_choice_allowed is not None:
        probes.append(await auditor.tool_choice_rewritten())
    if profile.reasoning_in_history:
        probes.append(await auditor.reasoning_injected())
    probes += await auditor.answers()
    added = None
    if baseline is not None:
        base_transport, base_model = baseline
        ours = await latency_ms(transport, model, rounds)
        theirs = await latency_ms(base_transport, base_model, rounds)
        if ours and theirs:
            added = {"median_ms": statistics.median(ours) - statistics.median(theirs),
                     "route_median_ms": statistics.median(ours), "baseline_median_ms": statistics.median(theirs),
                     "n": min(len(ours), len(theirs))}
    return AuditResult(route, profile.name, probes, added)
