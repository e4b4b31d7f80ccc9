"""The sanitiser: the body to send plus every change with its reason; --strict refuses instead."""

from __future__ import annotations

import pytest

from k2probe.core.errors import RequestRefused
from k2probe.core.profiles import profile_for
from k2probe.core.sanitize import sanitise

K27 = profile_for("kimi-k2.7-code")


def test_drops_fixed_params_with_reasons():
    result = sanitise({"model": "kimi-k2.7-code", "messages": [], "temperature": 0.2, "top_p": 0.95, "n": 3}, K27)
    assert "temperature" not in result.body and "n" not in result.body
    assert result.body["top_p"] == 0.95  # the fixed value itself is accepted and kept
    reasons = [c.reason for c in result.changes]
    assert "temperature=0.2 dropped: fixed at 1 for kimi-k2.7-code" in reasons
    assert "n=3 dropped: fixed at 1 for kimi-k2.7-code" in reasons


def test_never_sends_thinking_disabled_or_forced_tool_choice():
    result = sanitise({"model": "m", "messages": [], "thinking": {"type": "disabled"}, "tool_choice": "required"}, K27)
    assert "thinking" not in result.body and result.body["tool_choice"] == "auto"
    named = sanitise({"model": "m", "messages": [], "tool_choice": {"type": "function", "function": {"name": "x"}}}, K27)
    assert named.body["tool_choice"] == "auto"
    assert sanitise({"model": "m", "messages": [], "tool_choice": "none"}, K27).body["tool_choice"] == "none"


def test_always_sets_an_output_budget():
    result = sanitise({"model": "m", "messages": []}, K27)
    assert result.body["max_tokens"] == 32768
    low = sanitise({"model": "m", "messages": [], "max_tokens": 2048}, K27)
    assert low.body["max_tokens"] == 2048
    assert any(c.action == "note" and "16000" in c.reason for c in low.changes)
    kept = sanitise({"model": "m", "messages": [], "max_completion_tokens": 20000}, K27)
    assert "max_tokens" not in kept.body


def test_strict_refuses():
    with pytest.raises(RequestRefused, match=r"temperature=0\.2 dropped"):
        sanitise({"model": "m", "messages": [], "temperature": 0.2}, K27, strict=True)
    assert sanitise({"model": "m", "messages": [], "max_tokens": 100}, K27, strict=True).body["max_tokens"] == 100


def test_generic_profile_passes_sampling_through():
    generic = profile_for("gpt-something")
    result = sanitise({"model": "gpt-something", "messages": [], "temperature": 0.2, "tool_choice": "required"},
                      generic)
    assert result.body["temperature"] == 0.2 and result.body["tool_choice"] == "required"


def test_gateway_prefixed_model_finds_its_profile():
    assert profile_for("moonshotai/kimi-k2.7-code").name == "kimi-k2.7-code"
    assert profile_for("kimi-k2.7-code-highspeed").price.output == 8.0
