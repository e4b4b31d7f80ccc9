"""What a suite is — its samples, how one is solved and scored, the metrics it adds, how the emulator plays it — and
the registry that finds a suite by name, by folder or by Python file.

A suite is any object with `name`, `samples()`, `async solve(sample, model)` and `async score(sample, attempt,
executor)`; `metrics(samples)`, `play(request)` and `given(path)` are optional (`BaseSuite` has the defaults). The
runner knows nothing else of it: solve → score → record, whatever the suite is.

A suite file (`k2probe eval my_suite.py`) is the user's own Python: it runs in k2probe's process, like a pytest
conftest. Code the *model* writes never does: a suite judges it only through the executor it is given (the sandbox)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from k2probe.core.errors import UsageError
from k2probe.core.results import Usage, Verdict

if TYPE_CHECKING:
    from k2probe.client.transport import Outcome as ChatOutcome
    from k2probe.client.transport import Transport
    from k2probe.contexts import RouteContext, RunContext
    from k2probe.core.results import Sample
    from k2probe.sandbox.executor import Executor


class Identified(Protocol):
    """A suite's sample: anything with a stable `id` (a task id, unique in its suite)."""

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class Case:
    """A sample for suites that need nothing more: its id, what the model is given, what a right answer is."""

    id: str
    input: Any = None
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Attempt:
    """What solving one sample produced: the `answer` the scorer judges (text, a message, an agent's result), the
    `completion` text kept with the sample, and its `usage` (None: what the sample's model handle counted)."""

    answer: Any = None
    completion: str | None = None
    usage: Usage | None = None


class Unanswered(Exception):
    """The route never answered usefully (retries spent): nothing of the model's to judge — the sample is `error`,
    never scored and never counted against the model (core/noanswer.py)."""


class RouteModel:
    """The model one sample is solved with: the route's context (route, profile), the run its calls are recorded in,
    its transport, the sandbox executor (for suites whose model works in a workspace), and the output budget. `chat`
    counts into `usage`."""

    def __init__(self, routed: RouteContext, run: RunContext, transport: Transport, executor: Executor,
                 max_tokens: int) -> None:
        self.routed, self.run, self.transport = routed, run, transport
        self.executor, self.max_tokens = executor, max_tokens
        self.usage = Usage(cost_usd=0.0)

    async def chat(self, messages: list[dict[str, Any]] | str, *, purpose: str | None = None,
                   **params: Any) -> ChatOutcome:
        """One chat request (a prompt, or messages) made safe for the route's profile; the transport's outcome.
        Raises Unanswered when the route did not answer (4xx/5xx/connection, retries spent)."""
        from k2probe.core.noanswer import unanswered
        from k2probe.core.sanitize import sanitise

        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = sanitise({"model": self.routed.route.model, "max_tokens": self.max_tokens, **params,
                         "messages": messages}, self.routed.profile).body
        outcome = await self.transport.chat(body, purpose=purpose)
        self._count(outcome)
        if (reason := unanswered(outcome.failure, len(outcome.calls))) is not None:
            raise Unanswered(reason)
        return outcome

    def _count(self, outcome: ChatOutcome) -> None:
        calls = outcome.calls
        priced = [c.cost_usd for c in calls if c.prompt_tokens or c.completion_tokens or c.price_source]
        u = self.usage
        cost = None if u.cost_usd is None or any(c is None for c in priced) else u.cost_usd + sum(c or 0.0 for c in priced)
        self.usage = Usage(calls=u.calls + len(calls), retries=u.retries + outcome.retries,
                           prompt_tokens=u.prompt_tokens + sum(c.prompt_tokens for c in calls),
                           completion_tokens=u.completion_tokens + sum(c.completion_tokens for c in calls),
                           reasoning_tokens=u.reasoning_tokens + sum(c.reasoning_tokens for c in calls),
                           cached_tokens=u.cached_tokens + sum(c.cached_tokens for c in calls), cost_usd=cost,
                           latency_ms=(u.latency_ms or 0.0) + sum(c.latency_ms or 0.0 for c in calls))


# --- how the emulator plays a suite -----------------------------------------------------------------------------------


def text_of(content: Any) -> str:
    """A message's text, whether it is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass(frozen=True)
class PlayRequest:
    """A chat request the emulator got, and the emulator's knobs a suite's play may honour."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    tool_choice: Any
    seed: int = 0
    wrong_rate: float = 0.0  # share of answers deliberately wrong
    slip_rate: float = 0.0  # share of agent steps that slip
    tool_fault_rate: float = 0.0  # share of tool calls broken

    @property
    def offered(self) -> list[str]:
        return [str((t.get("function") or {}).get("name")) for t in self.tools if isinstance(t, dict)]

    def user_text(self, *, last: bool = False) -> str | None:
        users = [m for m in self.messages if isinstance(m, dict) and m.get("role") == "user"]
        return text_of((users[-1] if last else users[0]).get("content")) if users else None


@dataclass
class Played:
    """The emulated model's answer: reasoning, then content or tool calls ((id, name, arguments JSON) each)."""

    reasoning: str
    content: str = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)


# --- the protocol ------------------------------------------------------------------------------------------------------


@runtime_checkable
class Suite(Protocol):
    """A kind of evaluation. Required: `name`, `samples`, `solve`, `score`; `metrics`, `play` and `given` are
    optional (see BaseSuite)."""

    name: str

    def samples(self) -> Sequence[Identified]:
        """Every sample, in a stable order, each with a unique `id`."""
        ...

    async def solve(self, sample: Any, model: RouteModel) -> Attempt:
        """Ask the model (raise Unanswered, or let model.chat raise it, when the route never answered)."""
        ...

    async def score(self, sample: Any, attempt: Attempt, executor: Executor) -> Verdict:
        """Judge the attempt; model-written code runs only through `executor` (the sandbox), never in-process."""
        ...


class BaseSuite:
    """Defaults for a suite's optional parts: no metrics of its own, the emulator's generic answer, no samples file."""

    name = "suite"

    def metrics(self, samples: list[Sample]) -> dict[str, Any]:
        """What this suite adds to a route's metrics (under `suite_metrics`), from that route's samples."""
        return {}

    def play(self, request: PlayRequest) -> Played | None:
        """The emulated model's answer when `request` is one of this suite's prompts, else None."""
        return None

    def attempt_from(self, completion: str) -> Attempt | None:
        """The attempt a stored answer stands for, when this suite can score it again from its text alone (then an
        answer kept before its verdict is verified on resume, not asked for again); None: it cannot."""
        return None

    def playable(self) -> bool:
        """Whether the built-in emulator can play this suite's samples (it has a `play` of its own)."""
        return type(self).play is not BaseSuite.play

    def given(self, path: str) -> dict[str, list[Attempt]]:
        """Attempts read from a samples file (`--samples`), by sample id (one per epoch), judged without calling a
        model."""
        raise UsageError(f"--samples verifies given completions of HumanEval problems, not of suite {self.name!r}",
                         fix="use it with: eval humaneval")


UNPLAYED = ("the built-in emulator plays only suites that script it (k2probe's shipped tasks, a suite with `play`): "
            "on {suite} it answers like a model that cannot solve the tasks, so these verdicts say nothing of a model "
            "— point a route at a real endpoint to evaluate one")


def attempt_from(suite: Suite, completion: str) -> Attempt | None:
    hook = getattr(suite, "attempt_from", None)
    return hook(completion) if callable(hook) else None


def plays_on_emulator(suite: Suite) -> bool:
    """Whether the built-in emulator can play `suite` (a suite without `playable` is asked by its `play` hook)."""
    hook = getattr(suite, "playable", None)
    if callable(hook):
        return bool(hook())
    return callable(getattr(suite, "play", None))


def metrics_of(suite: Suite, samples: list[Sample]) -> dict[str, Any]:
    hook = getattr(suite, "metrics", None)
    return dict(hook(samples)) if callable(hook) else {}


def given_of(suite: Suite, path: str) -> dict[str, list[Attempt]]:
    hook = getattr(suite, "given", None)
    if not callable(hook):
        return BaseSuite.given(suite, path)  # type: ignore[arg-type]
    return dict(hook(path))


# --- the registry -------------------------------------------------------------------------------------------------------

# A new suite kind: one module, one line here ("name": "module:attribute", a Suite class or factory).
BUILT_IN: dict[str, str] = {
    "toolcalls": "k2probe.eval.suites.toolcalls:ToolCallSuite",
    "humaneval": "k2probe.eval.suites.humaneval:HumanEvalSuite",
}
_registered: dict[str, Suite] = {}  # suites registered in this process (a loaded suite file, an API-given object)


def register(suite: Suite) -> Suite:
    """Make `suite` known by its name in this process (the emulator here plays it too); returns it. The names of the
    built-in and shipped suites are taken."""
    from k2probe.tasks.shipped import suite_names

    check_suite(suite, repr(suite))
    if suite.name in BUILT_IN or suite.name in suite_names():
        raise UsageError(f"suite name {suite.name!r} is a built-in suite's", fix="give your suite another name")
    _registered[suite.name] = suite
    return suite


@functools.cache
def _built_in(name: str) -> Suite:
    module, _, attribute = BUILT_IN[name].partition(":")
    made = getattr(importlib.import_module(module), attribute)()
    return check_suite(made, name)


@functools.cache
def _repository(ref: str) -> Suite:
    from k2probe.eval.suites.repository import RepositorySuite

    return RepositorySuite(ref)


def known() -> list[str]:
    from k2probe.tasks.shipped import suite_names

    return [*BUILT_IN, *suite_names(), *(n for n in _registered if n not in BUILT_IN)]


def get_suite(ref: str) -> Suite:
    """The suite `ref` names: a registered or built-in name, a shipped repository suite, a folder with a
    suite.toml, or a Python file defining `suite`. UsageError (exit 2) saying what exists otherwise."""
    from k2probe.tasks.shipped import is_user_suite, suite_names

    if ref in _registered:
        return _registered[ref]
    if ref in BUILT_IN:
        return _built_in(ref)
    if ref.endswith(".py"):
        return load_suite_file(ref)
    if ref in suite_names() or is_user_suite(ref):
        return _repository(str(Path(ref).resolve()) if is_user_suite(ref) else ref)
    raise UsageError(f"unknown suite {ref!r}", fix=f"suites: {', '.join(known())}, a folder with a suite.toml, "
                                                   "or a Python file defining `suite`")


def check_suite(made: Any, where: str) -> Suite:
    missing = [part for part in ("name", "samples", "solve", "score") if not hasattr(made, part)]
    if missing or not isinstance(getattr(made, "name", None), str):
        raise UsageError(f"{where}: not a suite (missing {', '.join(missing) or 'a string name'})",
                         fix="give it name, samples(), async solve(sample, model) and async score(sample, attempt, "
                             "executor) — or subclass k2probe.BaseSuite")
    return made  # type: ignore[no-any-return]


def load_suite_file(path: str) -> Suite:
    """A user's suite file: a Python module with a module-level `suite` (a Suite object, or a class or function
    that makes one). It is the user's own code and runs here, in the harness. Any failure is one UsageError line."""
    file = Path(path).resolve()
    if not file.is_file():
        raise UsageError(f"suite file {path} does not exist", fix="give the path of a .py file that defines `suite`")
    name = f"k2probe_user_suite_{abs(hash(str(file)))}"
    if name in sys.modules:
        module = sys.modules[name]
    else:
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise UsageError(f"suite file {path} cannot be loaded", fix="give a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # the user's code: whatever it raises is their file's problem, said in a line
            del sys.modules[name]
            if isinstance(exc, KeyboardInterrupt):
                raise
            where = _user_line(exc, file)
            raise UsageError(f"suite file {path}{where}: {type(exc).__name__}: {exc}".replace("\n", " ")[:400],
                             fix="fix the file (it runs as ordinary Python: try `python " + str(path) + "`)") from None
    made = getattr(module, "suite", None)
    if made is None:
        raise UsageError(f"suite file {path} defines no `suite`", fix="add a module-level `suite = MySuite()`")
    if isinstance(made, type) or (callable(made) and not hasattr(made, "samples")):
        try:
            made = made()
        except Exception as exc:
            raise UsageError(f"suite file {path}: making its suite raised {type(exc).__name__}: {exc}"[:400],
                             fix="make `suite` an object, or a class that takes no arguments") from None
    return register(check_suite(made, f"suite file {path}"))


def _user_line(exc: BaseException, file: Path) -> str:
    """', line N' of the user's file where `exc` came from, when it did."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f", line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == file]
    return f", line {frames[-1].lineno}" if frames else ""


def select(suite: Suite, tasks: Sequence[str] | None, limit: int | None) -> list[Identified]:
    """The suite's samples narrowed by --tasks (in the order given) and --limit, in a stable order."""
    every = list(suite.samples())
    if not every:
        raise UsageError(f"suite {suite.name!r} has no samples", fix="give it at least one sample")
    seen: set[str] = set()
    twice = [s.id for s in every if s.id in seen or seen.add(s.id)]  # type: ignore[func-returns-value]
    if twice:  # a sample is one result per task, route and epoch: two samples of one id would share it
        raise UsageError(f"suite {suite.name!r} has more than one sample with id {twice[0]!r}",
                         fix="give each sample an id of its own")
    if tasks:
        by_id = {s.id: s for s in every}
        unknown = [t for t in tasks if t not in by_id]
        if unknown:
            raise UsageError(f"unknown task(s) in {suite.name}: {', '.join(unknown[:5])}",
                             fix=f"task ids look like {every[0].id!r}")
        every = [by_id[t] for t in tasks]
    return every[:limit] if limit else every


def play(request: PlayRequest) -> Played | None:
    """The emulator's hook: the first suite (built-in, shipped, then registered here) that recognises the request
    answers it."""
    from k2probe.tasks.shipped import suite_names

    suites: list[Suite] = [_built_in(n) for n in BUILT_IN]
    suites += [_repository(n) for n in suite_names()]
    suites += [s for n, s in list(_registered.items()) if n not in BUILT_IN]
    for suite in suites:
        hook: Callable[[PlayRequest], Played | None] | None = getattr(suite, "play", None)
        if hook is not None and (played := hook(request)) is not None:
            return played
    return None
