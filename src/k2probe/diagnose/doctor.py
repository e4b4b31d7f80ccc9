"""The diagnosis ladder for one route, in the guide's order: key, base URL, model id, parameters; then tools, streaming."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

from k2probe.client.probes import probe_models, url_variants
from k2probe.client.transport import Outcome, RetryPolicy, Transport
from k2probe.contexts import RouteContext, RunContext
from k2probe.core.config import check_base_url, check_key, url_problem
from k2probe.core.envnames import PROFILE_ENV
from k2probe.core.failures import FIXES, Failure, fix_for
from k2probe.core.profiles import CONFIGURED, MODEL_ID
from k2probe.core.sanitize import sanitise
from k2probe.diagnose.audit import Auditor, Probed

DIAGNOSES = ("ok", "missing_key", "invalid_key", "doubled_v1", "missing_v1", "bad_base_url", "unreachable",
             "unknown_model", "unsupported_param", "tool_choice_rejected", "reasoning_dropped", "rate_limited",
             "quota_exhausted", "server_error", "gateway_rejected_param", "gateway_rewrites", "malformed_response",
             "stream_cut", "unclassified")
PING = {"role": "user", "content": "Reply with the single word: ok"}
LOOKUP_TOOL = {"type": "function", "function": {
    "name": "lookup_symbol", "description": "Find where a symbol is defined in the repository.",
    "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}}}


@dataclass
class Check:
    """One rung of the ladder: pass, warn, fail or skip, the evidence, and the fix."""

    id: str
    status: str
    detail: str
    fix: str = ""
    code: str | None = None  # a DIAGNOSES code when status is fail
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Diagnosis:
    route: str
    checks: list[Check]

    @property
    def diagnosis(self) -> str:
        return next((c.code or "server_error" for c in self.checks if c.status == "fail"), "ok")

    def as_json(self) -> dict[str, Any]:
        return {"route": self.route, "diagnosis": self.diagnosis, "checks": [asdict(c) for c in self.checks]}


class Stop(Exception):
    """A rung failed that later rungs depend on."""


def code_for(failure: Failure) -> str:
    """The diagnosis a provider failure points to (status and body: core.failures.cause_of)."""
    return failure.cause


def _fail(check_id: str, failure: Failure, fix: str = "") -> Check:
    code = code_for(failure)
    return Check(check_id, "fail", failure.line(), fix or FIXES.get(code, ""), code,
                 {"status": failure.status, "error_type": failure.type, "message": failure.message})


class Doctor:
    """Runs the ladder; each rung appends one Check."""

    def __init__(self, routed: RouteContext, run: RunContext, params: dict[str, Any]) -> None:
        self.routed, self.recording = routed, run
        self.route = routed.route
        self.profile = routed.profile
        self.params = {**self.route.params, **params}
        self.checks: list[Check] = []
        self.models: list[str] = []
        self.transport: Transport | None = None

    async def run(self) -> Diagnosis:
        try:
            self.key_and_url_static()
            await self.reachability()
            async with self.routed.transport(self.recording.record, policy=RetryPolicy(max_retries=0)) as self.transport:
                await self.model()
                await self.team_params()
                await self.fixed_param_enforcement()
                await self.tool_choice()
                await self.streaming()
                await self.reasoning_round_trip()
                await self.reasoning_injection()
        except Stop:
            pass
        return Diagnosis(self.route.name, self.checks)

    def add(self, check: Check) -> None:
        if check.status == "fail" and check.code and check.fix == FIXES.get(check.code):
            # in the terms of this route's provider or gateway
            check.fix = fix_for(check.code, self.route.base_url, key_env=self.route.api_key_env)
        self.checks.append(check)
        if check.status == "fail" and check.id in ("key", "base_url", "model"):
            raise Stop

    async def send(self, check: str, extra: dict[str, Any], *, raw: bool = False) -> Outcome:
        body: dict[str, Any] = {"model": self.route.model, "messages": [PING], "max_tokens": 512, **extra}
        if not raw:
            body = sanitise(body, self.profile).body
        assert self.transport is not None
        return await self.transport.chat(body, purpose=f"doctor: {check}")

    # ---- rungs ---------------------------------------------------------------------------------------------------
    def key_and_url_static(self) -> None:
        env = self.route.api_key_env or "AI_GATEWAY_API_KEY"
        if not self.route.key():
            self.add(Check("key", "fail", f"no API key: {env} is not set", f"export {env}=<your key>", "missing_key"))
        for finding in check_key(self.route.key()):
            self.add(Check("key", "fail", finding.message, finding.fix, finding.code))

    async def reachability(self) -> None:
        base = self.route.base_url or ""
        unusable = url_problem(base)
        if unusable is not None:
            self.add(Check("base_url", "fail", unusable.message, unusable.fix, unusable.code))
        findings = check_base_url(base)
        probe = await probe_models(base, self.route.key(), self.route.name, self.route.model)
        self.recording.record(probe.record)
        if probe.failure is not None and probe.failure.status is None:  # nothing (or no TLS) answered there
            cause = probe.failure.cause
            self.add(Check("base_url", "fail", probe.failure.message, fix_for(cause, base, probe.failure.type), cause,
                           {"url": base}))
        if probe.failure is not None and probe.api_like and probe.failure.cause == "invalid_key":
            self.add(_fail("key", probe.failure))
        if not probe.api_like:
            self.checks.append(Check("key", "skip", "not verified: the base URL did not answer like an API"))
        else:
            self.checks.append(Check("key", "pass", f"key accepted ({self.route.api_key_env or 'built-in emulator'})"))
        if probe.api_like and probe.data is not None:
            self.models = [str(m.get("id")) for m in probe.data.get("data") or [] if isinstance(m, dict)]
            warn = [f for f in findings if f.code == "bad_base_url"]
            status = "warn" if warn else "pass"
            detail = f"{base} answers with {len(self.models)} models" + (f"; but {warn[0].message}" if warn else "")
            self.checks.append(Check("base_url", status, detail, warn[0].fix if warn else ""))
            return
        working = None
        for variant in url_variants(base):
            candidate = await probe_models(variant, self.route.key(), self.route.name, self.route.model)
            self.recording.record(candidate.record)
            if candidate.api_like:
                working = variant
                break
        code = next((f.code for f in findings), "bad_base_url")
        evidence = {"status": probe.status, "message": probe.failure.message if probe.failure else ""}
        what = findings[0].message if findings else f"{base} does not answer like an OpenAI-compatible API"
        if working:
            fix = f"use {working} (it answers like an API)"
        else:
            fix = findings[0].fix if findings else "copy the base URL from the provider's docs, ending in /v1"
        self.add(Check("base_url", "fail", f"{what} (GET /models: HTTP {probe.status})", fix, code, evidence))

    async def model(self) -> None:
        model = self.route.model
        outcome = await self.send("model", {})
        if outcome.failure is not None:
            check = _fail("model", outcome.failure)
            if check.code == "unknown_model":
                close = difflib.get_close_matches(model, self.models, n=3, cutoff=0.5)
                check.fix = (f"did you mean {', '.join(close)}?" if close else
                             f"this route serves: {', '.join(self.models[:8]) or 'no model list'}")
                check.evidence["suggestions"] = close
            self.add(check)
        listed = "listed by /models" if model in self.models else "not in /models, but it answers"
        self.add(Check("model", "pass", f"{model} answers ({listed}); finish_reason={outcome.finish_reason}"))
        self.add(await self._profile_check(outcome))

    async def _profile_check(self, outcome: Outcome) -> Check:
        """Which profile the route gets and how (client.routeprofile decided it when the route context opened, asking the
        route afresh for doctor); a generic one is shown with what the answer carries."""
        choice = self.routed.choice
        model, name = self.route.model, choice.profile.name
        if choice.how in (CONFIGURED, MODEL_ID):
            return Check("profile", "pass", f"profile {name} (from the {choice.how})")
        served = outcome.served_model or ""
        if not choice.generic:
            return Check("profile", "warn", f"{model!r} is an alias: {choice.source()}, so the checks below use the "
                         f"{name} profile (inferred)",
                         f"make it explicit: export {PROFILE_ENV}={name} (or profile = \"{name}\" in the route's "
                         "table of k2probe.toml)", evidence={"served_model": served, "how": choice.how})
        thinking = bool(outcome.reasoning)
        although = " although the answer carries reasoning (a thinking model)" if thinking else ""
        return Check("profile", "warn", f"{model!r} matches no known profile ({choice.source()}) and its answer names "
                     f"{served or 'no model'}: the generic profile is used{although}",
                     f"if this is Kimi behind an alias, export {PROFILE_ENV}=kimi-k2.7-code",
                     evidence={"served_model": served, "reasoning": thinking, "how": choice.how})

    async def team_params(self) -> None:
        if not self.params:
            self.add(Check("params", "pass", "no team defaults configured (use --param or params in k2probe.toml)"))
            return
        outcome = await self.send("params (your client's defaults)", dict(self.params), raw=True)
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        if outcome.failure is not None:
            check = _fail("params", outcome.failure)
            if check.code == "unsupported_param":
                changes = sanitise({"model": self.route.model, **self.params}, self.profile).changes
                reasons = "; ".join(c.reason for c in changes if c.action != "set") or outcome.failure.message
                check.fix = f"remove them from your client's defaults ({reasons}); `k2probe chat` drops them for you"
            elif check.code == "tool_choice_rejected":
                check.fix = "send tool_choice 'auto' or 'none': thinking models reject 'required' and named functions"
            self.add(check)
            return
        ignored = [c for c in sanitise({"model": self.route.model, **self.params}, self.profile).changes
                   if c.action in ("dropped", "replaced")]
        if ignored:
            self.add(Check("params", "warn", f"the route accepted {shown} although the model fixes them: it ignores "
                           "them silently, so your client's settings have no effect",
                           "; ".join(c.reason for c in ignored)))
        else:
            self.add(Check("params", "pass", f"team defaults accepted: {shown}"))

    def _auditor(self) -> Auditor:
        assert self.transport is not None
        return Auditor(self.transport, self.profile, self.route.model, who="doctor")

    def _probed(self, check_id: str, probed: Probed) -> None:
        """An audit probe as a rung: a finding that rewrites the contract fails the route (`gateway_rewrites`)."""
        finding = probed.finding
        if finding is None:
            self.add(Check(check_id, "pass", probed.ok_detail))
        elif finding.severity in ("high", "medium"):
            self.add(Check(check_id, "fail", f"{finding.id}: {finding.detail}",
                           f"{finding.fix}; run `k2probe audit` for everything this route changes".lstrip("; "),
                           "gateway_rewrites", finding.evidence))
        else:
            self.add(Check(check_id, "warn", finding.detail, "", None, finding.evidence))

    async def fixed_param_enforcement(self) -> None:
        if "temperature" not in self.profile.fixed or "temperature" in self.params:
            return
        self._probed("fixed_params", await self._auditor().param_swallowed())

    async def tool_choice(self) -> None:
        if self.profile.tool_choice_allowed is None or "tool_choice" in self.params:
            return
        self._probed("tool_choice", await self._auditor()
                     .tool_choice_rewritten())

    async def reasoning_injection(self) -> None:
        if not self.profile.reasoning_in_history:
            return
        self._probed("reasoning_injected", await self._auditor()
                     .reasoning_injected())

    async def streaming(self) -> None:
        outcome = await self.send("streaming", {"stream": True})
        call = outcome.last
        if outcome.failure is not None:
            self.add(_fail("streaming", outcome.failure))
            return
        where = call.usage_location or "nowhere"
        detail = (f"TTFT {call.ttft_ms:.0f} ms, first content {call.ttfc_ms or 0:.0f} ms, "
                  f"{len(call.itl_ms) + 1} token chunks, usage in {where}") if call.ttft_ms is not None else \
            "stream finished with no token chunks"
        if call.usage_location is None:
            self.add(Check("streaming", "warn", detail, "ask for stream_options.include_usage or count tokens apart"))
        else:
            self.add(Check("streaming", "pass", detail))

    async def reasoning_round_trip(self) -> None:
        if not self.profile.reasoning_in_history:
            return
        ask = {"role": "user", "content": "Where is parse_total defined? Use the lookup_symbol tool."}
        first = await self.send("reasoning: tool call", {"messages": [ask], "tools": [LOOKUP_TOOL], "tool_choice": "auto"})
        if first.failure is not None or first.message is None:
            self.add(_fail("reasoning", first.failure or Failure(200, "empty", "no message")))
            return
        calls = first.message.get("tool_calls") or []
        if not calls:
            self.add(Check("reasoning", "warn", "the model answered without calling the tool: round trip not tested",
                           "rerun doctor"))
            return
        dropped = first.reasoning is None
        history = [ask, first.message, {"role": "tool", "tool_call_id": calls[0]["id"],
                                        "content": "parse_total is defined in billing/rows.py line 12"}]
        second = await self.send("reasoning: sent back", {"messages": history, "tools": [LOOKUP_TOOL],
                                                          "tool_choice": "auto"})
        evidence = {"reasoning_field": first.last.reasoning_field,
                    "second_status": second.last.status, "second_error": second.last.error_message}
        if dropped:
            detail = "the route returned the tool-call turn without reasoning_content"
            if second.failure is not None:
                detail += f"; sending the turn back as received failed: {second.failure.line()}"
            self.add(Check("reasoning", "fail", detail, "use a route or gateway setting that passes reasoning_content "
                           "through; the model needs it back on every tool-call turn", "reasoning_dropped", evidence))
        elif second.failure is not None:
            self.add(_fail("reasoning", second.failure))
        elif first.last.reasoning_field != "reasoning_content":
            self.add(Check("reasoning", "warn", f"reasoning arrives as '{first.last.reasoning_field}', not "
                           "reasoning_content; the round trip worked when sent back unchanged",
                           "pass the field back unchanged; do not rename or drop it", None, evidence))
        else:
            self.add(Check("reasoning", "pass", "reasoning_content survived a two-step tool call", "", None, evidence))


async def run_doctor(routed: RouteContext, run: RunContext, params: dict[str, Any]) -> Diagnosis:
    return await Doctor(routed, run, params).run()
