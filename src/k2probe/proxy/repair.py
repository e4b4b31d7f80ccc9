"""What `enforce` and `repair` do with a request the checks found wanting. Enforce answers a request Moonshot would
refuse with Moonshot's own error, in Moonshot's order (core.contract), so it costs nothing. Repair fixes only what can
be fixed honestly: the parameters the sanitiser strips, and a tool-call turn's reasoning put back exactly as the model
returned it — never invented: a turn the proxy has no record of is left as it is, its finding unrepaired."""

from __future__ import annotations

from typing import Any

from k2probe.core import contract
from k2probe.core.profiles import Profile
from k2probe.core.sanitize import sanitise
from k2probe.proxy.checks import Finding
from k2probe.proxy.memory import Memory

NOT_FOUND = contract.ApiError(404, "resource_not_found_error", "404 page not found")  # a doubled /v1 (body [?])


def refusal(body: dict[str, Any], profile: Profile, findings: list[Finding]) -> contract.ApiError | None:
    """The error Moonshot would answer this request with (the first rule it breaks), or None when it would not."""
    refused = [f for f in findings if f.would_400]
    if not refused:
        return None
    if any(f.kind == "doubled_v1" for f in refused):
        return NOT_FOUND
    try:
        if profile.fixed:
            contract.check_fixed_params(body, profile.fixed)
        if profile.thinking_forced:
            contract.check_thinking(body)
        if profile.tool_choice_allowed is not None:
            contract.check_tool_choice(body)
        if profile.reasoning_in_history:
            for index, message in enumerate(body.get("messages") or []):
                if isinstance(message, dict) and contract.lacks_reasoning(message):
                    raise contract.reasoning_missing(index)
    except contract.ApiError as err:
        return err
    return contract.bad_request(refused[0].message)


def repair(body: dict[str, Any], profile: Profile, memory: Memory, findings: list[Finding]) -> dict[str, Any]:
    """The request with what can be fixed fixed; each finding fixed is marked `repaired`, with what was done."""
    fixed = dict(body)
    sanitised = sanitise(body, profile)
    for change in sanitised.changes:
        if change.action not in ("dropped", "replaced"):
            continue  # the sanitiser's max_tokens is a choice of budget, the team's to make
        if change.field in sanitised.body:
            fixed[change.field] = sanitised.body[change.field]
        else:
            fixed.pop(change.field, None)
        for finding in findings:
            if finding.pointer == f"/{change.field}":
                finding.repaired, finding.evidence = True, f"{finding.evidence}; {change.line()}".lstrip("; ")
    messages = body.get("messages")
    if isinstance(messages, list):
        copied = list(messages)
        for finding in findings:
            if finding.kind not in ("reasoning_dropped", "reasoning_altered"):
                continue
            index = int(finding.pointer.split("/")[2])
            relayed = memory.turn(copied[index])
            if relayed is None or relayed.reasoning is None:
                finding.evidence += "; not repaired: no record of the reasoning the model returned for this turn"
                continue
            copied[index] = {**copied[index], "reasoning_content": relayed.reasoning}
            finding.repaired = True
            finding.evidence += (f"; put back the {len(relayed.reasoning)} characters relayed for tool call "
                                 f"{relayed.call_id!r}")
        fixed["messages"] = copied
    for finding in findings:
        if finding.kind == "doubled_v1":
            finding.repaired, finding.evidence = True, "forwarded to /v1/chat/completions"
    return fixed
