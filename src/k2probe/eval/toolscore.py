"""Judging one tool-call sample: did the route call when the label says it should (and the right tool), do the
arguments parse and validate against the tool's JSON Schema, and does finish_reason agree with what came back."""

from __future__ import annotations

import json
from typing import Any

from k2probe.tasks.toolcalls import TOOLS, ToolCase


def judge_tool_answer(case: ToolCase, message: dict[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
    """The sample's outcome, reason and the details metrics are computed from (`verification`)."""
    import jsonschema

    calls = (message or {}).get("tool_calls") or []
    called = bool(calls)
    detail: dict[str, Any] = {"kind": "toolcall", "expected": case.expect_call, "called": called,
                              "finish_reason": finish_reason, "tool": None, "args_valid": None}
    problems: list[str] = []
    if called:
        function = calls[0].get("function") or {}
        name, raw = function.get("name"), function.get("arguments")
        detail["tool"] = name
        if name not in TOOLS or name not in case.tools:
            problems.append(f"called {name!r}, which was not offered")
            detail["args_valid"] = False
        else:
            try:
                arguments = json.loads(raw) if isinstance(raw, str) else raw
                jsonschema.validate(arguments, TOOLS[name]["function"]["parameters"])
                detail["args_valid"] = True
            except (ValueError, TypeError) as exc:
                detail["args_valid"] = False
                problems.append(f"arguments do not parse: {str(exc)[:120]}")
            except jsonschema.ValidationError as exc:
                detail["args_valid"] = False
                problems.append(f"arguments do not validate: {exc.message[:160]}")
        if finish_reason != "tool_calls":
            problems.append(f"a tool call came back with finish_reason {finish_reason!r}, not 'tool_calls'")
    elif finish_reason == "tool_calls":
        problems.append("finish_reason 'tool_calls' without any tool call")
    detail["finish_consistent"] = not any("finish_reason" in p for p in problems)
    if case.expect_call and not called:
        problems.insert(0, f"expected a call to {case.expected_tool}, got text")
    elif not case.expect_call and called:
        problems.insert(0, f"called {detail['tool']!r} where text was expected")
    elif called and case.expected_tool and detail["tool"] != case.expected_tool:
        problems.insert(0, f"called {detail['tool']!r}, expected {case.expected_tool!r}")
    outcome = "failed" if problems else "passed"
    detail.update(status=outcome, reason="; ".join(problems) or "as labelled", output=json.dumps(calls)[:1500])
    return {"outcome": outcome, "reason": detail["reason"], "verification": detail}


def trigger_scores(details: list[dict[str, Any]]) -> dict[str, Any]:
    """Tool-call trigger precision / recall / F1 against the labels, schema accuracy and finish_reason consistency."""
    tp = sum(1 for d in details if d["expected"] and d["called"])
    fp = sum(1 for d in details if not d["expected"] and d["called"])
    fn = sum(1 for d in details if d["expected"] and not d["called"])
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)) if precision and recall else (0.0 if tp + fp + fn else None)
    made = [d for d in details if d["called"]]
    valid = sum(1 for d in made if d["args_valid"])
    consistent = sum(1 for d in details if d.get("finish_consistent"))
    return {"precision": precision, "recall": recall, "f1": f1, "n": len(details), "tp": tp, "fp": fp, "fn": fn,
            "schema_accuracy": {"value": valid / len(made) if made else None, "n": len(made)},
            "finish_consistency": {"value": consistent / len(details) if details else None, "n": len(details)}}
