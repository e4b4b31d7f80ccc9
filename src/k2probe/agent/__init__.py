"""The tool-calling loop over a repository: workspace, tools, sandbox, loop, runner. Its names load when first used:
a Ray node holding a workspace (agent/ray_space.py) imports the workspace and tools, never the loop and its client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k2probe.agent.loop import AgentLimits, LimitReached, LoopResult, Step
    from k2probe.agent.runner import AgentResult, AgentTask, run_agent
    from k2probe.sandbox.isolation import Limits

_WHERE = {"AgentLimits": "k2probe.agent.loop", "LimitReached": "k2probe.agent.loop", "LoopResult": "k2probe.agent.loop",
          "Step": "k2probe.agent.loop", "AgentResult": "k2probe.agent.runner", "AgentTask": "k2probe.agent.runner",
          "run_agent": "k2probe.agent.runner", "Limits": "k2probe.sandbox.isolation"}

__all__ = ["AgentLimits", "AgentResult", "AgentTask", "LimitReached", "Limits", "LoopResult", "Step", "run_agent"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
