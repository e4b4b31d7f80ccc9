"""k2probe: test and evaluate coding-model APIs (Kimi K2.7 Code first) through any OpenAI-compatible route.

The public API below is what the CLI itself calls. Each name is loaded on first use (module `__getattr__`), so
`import k2probe` and the CLI's start-up stay fast and import neither openai nor SQLAlchemy."""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone would double `import k2probe`'s own time
if TYPE_CHECKING:
    from typing import Any

    from k2probe.agent.loop import AgentLimits, LoopResult, Step
    from k2probe.agent.runner import AgentResult, AgentTask
    from k2probe.api import (
        RunningEmulator,
        audit,
        bench,
        command_contexts,
        compare,
        doctor,
        emulator,
        eval_plan,
        evaluate,
        quickstart,
        route_context,
        run_agent,
    )
    from k2probe.core.config import Route
    from k2probe.core.errors import ConfigError, K2ProbeError, ProbeFailed, UsageError
    from k2probe.core.results import (
        OVERALL,
        Outcome,
        Rate,
        RouteMetrics,
        Run,
        RunMetrics,
        Sample,
        SampleResult,
        Usage,
        Verdict,
    )
    from k2probe.diagnose.audit import AuditResult, Finding
    from k2probe.diagnose.doctor import Check, Diagnosis
    from k2probe.emulator.settings import EmulatorSettings
    from k2probe.eval.compare import Comparison
    from k2probe.eval.evaluate import EvalOutcome
    from k2probe.eval.plan import EvalPlan
    from k2probe.eval.runner import Progress
    from k2probe.eval.scheduler import LocalScheduler, Scheduler, Unit
    from k2probe.eval.suite import Attempt, BaseSuite, Case, Played, PlayRequest, RouteModel, Suite
    from k2probe.load.bench import BenchOutcome
    from k2probe.recording.store import Store
    from k2probe.sandbox.outcome import Verification

_WHERE = {
    "emulator": "k2probe.api", "evaluate": "k2probe.api", "eval_plan": "k2probe.api", "doctor": "k2probe.api",
    "audit": "k2probe.api", "run_agent": "k2probe.api", "compare": "k2probe.api", "RunningEmulator": "k2probe.api",
    "bench": "k2probe.api", "quickstart": "k2probe.api", "route_context": "k2probe.api",
    "command_contexts": "k2probe.api", "BenchOutcome": "k2probe.load.bench",
    "Scheduler": "k2probe.eval.scheduler", "LocalScheduler": "k2probe.eval.scheduler", "Unit": "k2probe.eval.scheduler",
    "EmulatorSettings": "k2probe.emulator.settings",
    "Route": "k2probe.core.config",
    "Store": "k2probe.recording.store",
    "EvalPlan": "k2probe.eval.plan", "EvalOutcome": "k2probe.eval.evaluate", "Progress": "k2probe.eval.runner",
    "Comparison": "k2probe.eval.compare",
    "Suite": "k2probe.eval.suite", "BaseSuite": "k2probe.eval.suite", "Case": "k2probe.eval.suite",
    "Attempt": "k2probe.eval.suite", "RouteModel": "k2probe.eval.suite", "PlayRequest": "k2probe.eval.suite",
    "Played": "k2probe.eval.suite",
    "Verdict": "k2probe.core.results", "Outcome": "k2probe.core.results", "Usage": "k2probe.core.results",
    "Sample": "k2probe.core.results", "SampleResult": "k2probe.core.results", "Rate": "k2probe.core.results",
    "RouteMetrics": "k2probe.core.results", "RunMetrics": "k2probe.core.results", "Run": "k2probe.core.results",
    "OVERALL": "k2probe.core.results",
    "AgentTask": "k2probe.agent.runner", "AgentResult": "k2probe.agent.runner",
    "AgentLimits": "k2probe.agent.loop", "LoopResult": "k2probe.agent.loop", "Step": "k2probe.agent.loop",
    "Verification": "k2probe.sandbox.outcome",
    "Diagnosis": "k2probe.diagnose.doctor", "Check": "k2probe.diagnose.doctor",
    "AuditResult": "k2probe.diagnose.audit", "Finding": "k2probe.diagnose.audit",
    "K2ProbeError": "k2probe.core.errors", "UsageError": "k2probe.core.errors", "ConfigError": "k2probe.core.errors",
    "ProbeFailed": "k2probe.core.errors",
}

__all__ = ["OVERALL", "AgentLimits", "AgentResult", "AgentTask", "Attempt", "AuditResult", "BaseSuite", "BenchOutcome",
           "Case", "Check", "Comparison", "ConfigError", "Diagnosis", "EmulatorSettings", "EvalOutcome", "EvalPlan",
           "Finding", "K2ProbeError", "LocalScheduler", "LoopResult", "Outcome", "PlayRequest", "Played",
           "ProbeFailed", "Progress", "Rate", "Route", "RouteMetrics", "RouteModel", "Run", "RunMetrics",
           "RunningEmulator", "Sample", "SampleResult", "Scheduler", "Step", "Store", "Suite", "Unit", "Usage",
           "UsageError", "Verdict", "Verification", "__version__", "audit", "bench", "command_contexts", "compare",
           "doctor", "emulator", "eval_plan", "evaluate", "quickstart", "route_context", "run_agent"]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use and keep it here. `emulator` is the emulator package itself,
    which is callable as `api.emulator`: importing the package (as the CLI does) would shadow a plain function."""
    from importlib import import_module

    if name == "emulator":
        return import_module("k2probe.emulator")
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'k2probe' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
