"""The tool-calling loop over a repository: workspace, tools, sandbox, loop, runner."""

from .loop import AgentLimits, LimitReached, LoopResult, Step
from .runner import AgentResult, AgentTask, run_agent
from .sandbox import Limits

__all__ = ["AgentLimits", "AgentResult", "AgentTask", "LimitReached", "Limits", "LoopResult", "Step", "run_agent"]
