"""The tool-calling loop over a repository: workspace, tools, sandbox, loop, runner."""

from k2probe.agent.loop import AgentLimits, LimitReached, LoopResult, Step
from k2probe.agent.runner import AgentResult, AgentTask, run_agent
from k2probe.sandbox.isolation import Limits

__all__ = ["AgentLimits", "AgentResult", "AgentTask", "LimitReached", "Limits", "LoopResult", "Step", "run_agent"]
