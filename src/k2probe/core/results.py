"""k2probe's typed vocabulary: what a sample's outcome is, what a verdict says, what a run measured.

One place for every result type. The store maps its rows to and from these models, the metrics are computed into
them, and every report, export and `--json` document serialises them (`model_dump(mode="json")`), so a field is
named, typed and documented once. Nothing here imports anything above `core`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class Outcome(StrEnum):
    """A sample's or an agent attempt's outcome, and whose it is: `failed` is the model's work; `error` is the
    harness's, the machine's or the route's (never counted against the model); `pending` is not done yet."""

    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"

    @property
    def judged(self) -> bool:
        """The model's work was judged (passed or failed): what accepted rates and pass@k count."""
        return self in (Outcome.PASSED, Outcome.FAILED)


class Model(BaseModel):
    """The base of every result: fields are declared (a misspelt one is refused), values validated on assignment; in
    the published JSON schema every field is required (a document always carries it, its default included)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, json_schema_serialization_defaults_required=True)


class Usage(Model):
    """What a sample (or attempt) cost: its calls, retries, tokens under the API's own names, dollars, latency.
    `cost_usd` is None when any call was unpriced ("unknown", never $0)."""

    calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0  # includes reasoning_tokens
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_ms: float | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Verdict(Model):
    """The judgement of one sample: its outcome, the reason in one line, and the proof (the tail of what the check
    printed). `details` carries what a suite's own scorer adds (a tool call's labels, a test run's command)."""

    outcome: Outcome
    reason: str | None = None
    proof: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    def proof_lines(self, lines: int = 12) -> list[str]:
        """The last non-blank lines of the proof: what shows why."""
        return [line for line in self.proof.splitlines() if line.strip()][-lines:]

    def as_row(self) -> dict[str, Any]:
        """The stored form (the `verification` JSON column: `status`, `reason`, `output`, then the details)."""
        return {**self.details, "status": self.outcome.value, "reason": self.reason, "output": self.proof}

    @classmethod
    def from_row(cls, row: dict[str, Any] | None, outcome: str, reason: str | None) -> Verdict:
        """A stored verification back as a verdict (rows written before a field existed read as its default)."""
        row = dict(row or {})
        row.pop("status", None)
        stored_reason = row.pop("reason", None)
        proof = row.pop("output", "") or ""
        return cls(outcome=Outcome(outcome), reason=reason if reason is not None else stored_reason,
                   proof=str(proof), details=row)


class SampleResult(Model):
    """What solving and scoring one sample produced: the verdict, the usage, what the model answered."""

    verdict: Verdict
    usage: Usage = Field(default_factory=Usage)
    completion: str | None = None  # the answer judged, when it is text (a HumanEval completion)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome

    @classmethod
    def error(cls, reason: str, proof: str = "", usage: Usage | None = None) -> SampleResult:
        """A sample k2probe (or the route) could not judge: `error`, never the model's failure."""
        return cls(verdict=Verdict(outcome=Outcome.ERROR, reason=reason, proof=proof), usage=usage or Usage())


class Sample(Model):
    """One planned unit of an evaluation — (task, route, epoch) — and its result once it has one."""

    id: str
    run_id: str
    suite: str
    task_id: str
    route: str
    epoch: int = 0
    outcome: Outcome = Outcome.PENDING
    reason: str | None = None
    verdict: Verdict | None = None
    completion: str | None = None
    usage: Usage = Field(default_factory=Usage)
    started_at: float | None = None
    finished_at: float | None = None
    answered_by: list[str] = Field(default_factory=list)  # the routes that answered its calls (its own, a fallback)


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"
    ERROR = "error"  # the store failed under it (abandoned)


class Run(Model):
    """One command's run as the store keeps it."""

    id: str
    command: str
    route: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    tool_version: str = ""
    started_at: float
    finished_at: float | None = None
    status: str = RunStatus.RUNNING.value
    summary: dict[str, Any] | None = None
    owner: str | None = None  # the lease: host:pid:start-time of the process working on it (None: nobody)
    lease_at: float | None = None  # when its owner last renewed the lease


class AttemptResult(Model):
    """How one agent attempt ended, as the store keeps it: its outcome, why the loop stopped, the verification, the
    diff and the totals of its steps."""

    status: Outcome
    end_reason: str | None = None
    verification: dict[str, Any] | None = None  # the test run's verdict (sandbox.outcome.Verification.as_json())
    diff: str | None = None
    steps: int = 0
    failures: dict[str, int] | None = None  # tool-call failures by kind
    reasoning_preserved: list[bool | None] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    trajectory_path: str | None = None


class Attempt(Model):
    """One agent attempt as the store keeps it (recording.schema.AttemptRow)."""

    id: str
    run_id: str
    sample_id: str | None
    task_id: str | None
    suite: str | None
    route: str
    model: str
    statement: str
    status: str  # running, passed, failed, error, interrupted
    end_reason: str | None
    verification: dict[str, Any] | None
    diff: str | None
    steps: int
    failures: dict[str, int] | None
    reasoning_preserved: list[bool | None] | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    trajectory_path: str | None
    isolation: dict[str, Any] | None
    started_at: float
    finished_at: float | None


class Review(Model):
    """A person's verdict on a run, one attempt or one sample (recording.schema.ReviewRow)."""

    id: int
    run_id: str
    attempt_id: str | None
    sample_id: str | None
    accepted: bool
    repair_minutes: float | None
    rollback: bool
    handoff: bool
    note: str | None
    created_at: float


# --- metrics: the guide's nine, and pass@k and the error rate, per route and overall ---------------------------------


class Rate(Model):
    """A share with its n and 95% Wilson interval; `value` None when nothing was counted."""

    value: float | None = None
    n: int = 0
    ci95: tuple[float, float] | None = None


class SampleCounts(Model):
    n: int = 0
    done: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0


class FirstSuccess(Model):
    """Calls and seconds to the first passing sample (the fewest over tasks)."""

    calls: int | None = None
    seconds: float | None = None


class AcceptedRate(Rate):
    reviewed: int = 0  # of the judged samples, how many a person reviewed (their review decides)


class Retries(Model):
    total: int = 0
    per_call: float | None = None
    n: int = 0


class ToolFailureRate(Rate):
    by_type: dict[str, int] = Field(default_factory=dict)


class RepairMinutes(Model):
    total: float = 0.0
    mean: float | None = None
    n: int = 0


class Latency(Model):
    per_call: float | None = None
    per_sample: float | None = None
    n_calls: int = 0
    n_samples: int = 0


class TotalTokens(Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    total: int = 0
    n: int = 0


class CostPerAccepted(Model):
    """Dollars per accepted sample; "unknown" when any call was unpriced (never a made-up $0); None when no call was
    made at all (a samples file's completions cost nothing k2probe saw)."""

    value: float | Literal["unknown"] | None = None
    total_cost_usd: float | Literal["unknown"] | None = 0.0
    accepted: int = 0
    unpriced_calls: int = 0
    price_sources: list[str] = Field(default_factory=list)


class PassAtK(Model):
    value: float | None = None
    n_tasks: int = 0


class Fallbacks(Model):
    """Requests that went to a fallback route, and how many calls each fallback route answered."""

    requests: int = 0
    answered_by_fallback: dict[str, int] = Field(default_factory=dict)


class RouteMetrics(Model):
    """Every figure of one route (or of the whole run: "overall"), each with its n."""

    samples: SampleCounts = Field(default_factory=SampleCounts)
    first_success: FirstSuccess = Field(default_factory=FirstSuccess)
    accepted_rate: AcceptedRate = Field(default_factory=AcceptedRate)
    retries: Retries = Field(default_factory=Retries)
    tool_call_failure_rate: ToolFailureRate = Field(default_factory=ToolFailureRate)
    repair_minutes: RepairMinutes = Field(default_factory=RepairMinutes)
    latency_avg_ms: Latency = Field(default_factory=Latency)
    latency_p95_ms: Latency = Field(default_factory=Latency)
    total_tokens: TotalTokens = Field(default_factory=TotalTokens)
    cost_per_accepted_usd: CostPerAccepted = Field(default_factory=CostPerAccepted)
    rollback_handoff_rate: Rate = Field(default_factory=Rate)
    pass_at_k: dict[str, PassAtK] = Field(default_factory=dict)  # "1", "2", … up to the epochs
    error_rate: Rate = Field(default_factory=Rate)
    fallbacks: Fallbacks = Field(default_factory=Fallbacks)
    suite_metrics: dict[str, Any] = Field(default_factory=dict)  # what the suite adds (toolcalls: trigger F1, …)


OVERALL = "overall"


class RunMetrics(RootModel[dict[str, RouteMetrics]]):
    """{route name: its metrics, "overall": the whole run's} — in JSON, the same mapping."""

    @property
    def overall(self) -> RouteMetrics:
        return self.root.get(OVERALL) or RouteMetrics()

    @property
    def routes(self) -> dict[str, RouteMetrics]:
        return {name: m for name, m in self.root.items() if name != OVERALL}

    def __getitem__(self, route: str) -> RouteMetrics:
        return self.root[route]

    def get(self, route: str) -> RouteMetrics | None:
        return self.root.get(route)


__all__ = ["OVERALL", "AcceptedRate", "Attempt", "AttemptResult", "CostPerAccepted", "Fallbacks", "FirstSuccess",
           "Latency", "Outcome", "PassAtK", "Rate", "RepairMinutes", "Retries", "Review", "RouteMetrics", "Run",
           "RunMetrics", "RunStatus", "Sample", "SampleCounts", "SampleResult", "ToolFailureRate", "TotalTokens",
           "Usage", "Verdict"]
