"""The `--json` documents: one pydantic model per command, each the published JSON schema of what that command prints
(`k2probe schema NAME`). Documents k2probe builds from typed results are those results (`eval`, `compare`); the rest
are declared here and, where a command builds its document as a dict, that dict validates against the model (the
shape is closed: `extra="forbid"`, so a renamed or added key fails the schema test until the model says so)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from k2probe.core.results import Attempt, Model, Outcome, Review, Run


class CallRow(Model):
    """One recorded call (recording.schema.CallRow), its request whole again (its messages read back)."""

    id: int
    run_id: str
    sample_id: str | None
    attempt_id: str | None
    step: int | None
    fallback_from: str | None  # the route it was made for, when a fallback route answered it
    route: str
    model: str
    endpoint: str
    stream: bool
    attempt: int
    purpose: str | None
    request: dict[str, Any]
    thread: str | None
    status: int | None
    error_type: str | None
    error_message: str | None
    retry_reason: str | None
    queue_ms: float
    prep_ms: float
    pool_ms: float
    connect_ms: float
    ttft_ms: float | None
    ttfc_ms: float | None
    latency_ms: float | None
    itl_ms: list[float]
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    cost_usd: float | None
    price_source: str | None
    finish_reason: str | None
    usage_location: str | None
    reasoning_field: str | None
    response_shape: list[str]
    media: list[dict[str, Any]]
    started_at: float


class RunsDocument(Model):
    """`k2probe runs --json`: the newest runs first."""

    runs: list[Run]


class RunDetail(Run):
    """`k2probe show --json` and `k2probe review --json`: a run with a page of its calls, its attempts, its samples'
    outcomes and reviews; `accepted` is the latest review's verdict (None: not reviewed)."""

    calls_total: int
    calls_offset: int
    calls: list[CallRow]
    attempts: list[Attempt]
    samples: dict[str, int]  # outcome: how many samples ended in it
    reviews: list[Review]
    accepted: bool | None


class Verification(Model):
    """The verdict on one test run (sandbox.outcome.Verification)."""

    status: Outcome
    reason: str
    command: str = ""
    output: str = ""
    duration_ms: float = 0.0
    guard: str = ""
    tampering: bool = False
    passed: bool


class AgentDocument(Model):
    """`k2probe agent --json`: one attempt, its verification and totals (`run_id`: the run to `review` it in)."""

    run_id: str
    attempt_id: str
    task: str | None
    statement: str
    verification: Verification
    end_reason: str
    end_detail: str
    summary: str | None
    steps: int
    tool_call_failures: dict[str, int]
    reasoning_preserved: list[bool | None]
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    diff: str
    trajectory: str
    isolation: dict[str, Any]


class Preflight(Model):
    task: str
    ok: bool
    detail: str
    untouched: Verification
    solved: Verification
    expected_tests: list[str]


class SuiteCheckDocument(Model):
    """`k2probe suite check --json`: for every task, the untouched repository fails and the solution passes."""

    suite: str
    ok: bool
    isolation: str
    tasks: list[Preflight]


# --- the diagnose commands' documents (built as dicts by those commands; validated against these) ------------------

CheckStatus = Literal["pass", "warn", "fail", "skip"]


class Check(Model):
    id: str
    status: CheckStatus
    detail: str
    fix: str = ""
    code: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)


class DoctorDocument(Model):
    """`k2probe doctor --json`: the diagnosis ladder; `diagnosis` is "ok" or the first failure's code."""

    route: str
    diagnosis: str
    checks: list[Check]


class Finding(Model):
    id: str
    severity: Literal["high", "medium", "low", "info"]
    detail: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    fix: str = ""


class PassedProbe(Model):
    check: str
    detail: str


class AuditDocument(Model):
    """`k2probe audit --json`: what the route changes of the Kimi contract."""

    route: str
    profile: str
    verdict: Literal["faithful", "rewrites"]
    findings: list[Finding]
    added_latency_ms: float | None
    passed: list[PassedProbe]


class CallFigures(Model):
    """One call's numbers under the API's names (core.records.figures)."""

    status: int | None
    ttft_ms: float | None
    ttfc_ms: float | None
    latency_ms: float | None
    queue_ms: float
    prep_ms: float
    pool_ms: float
    connect_ms: float
    tokens_per_s: float | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    cost_usd: float | None
    price_source: str | None
    finish_reason: str | None
    usage_location: str | None
    reasoning_field: str | None


class SmokeDocument(CallFigures):
    """`k2probe smoke --json`: the guide's first request, its figures, where the known-good record went."""

    route: str
    ok: bool
    error: str | None
    answer: str | None
    known_good_path: str | None
    changes: list[str]


class MediaRecord(Model):
    name: str
    kind: Literal["image", "video"]
    mime: str
    bytes: int
    width: int | None
    height: int | None
    duration_s: float | None
    fitted: bool
    delivery: str
    file_id: str | None
    sha256: str


class ChatDocument(CallFigures):
    """`k2probe chat --json`: one request's answer, reasoning and figures."""

    route: str
    ok: bool
    error: str | None
    answer: str | None
    reasoning: str | None
    changes: list[str]
    media: list[MediaRecord]
    media_notes: list[str]
    retries: int


class PublicRoute(Model):
    """A route as it may be printed: the key masked, the variable's name kept."""

    name: str
    base_url: str | None
    model: str
    profile: str | None
    api_key: str | None
    api_key_env: str | None
    headers: dict[str, str]
    params: dict[str, Any]
    emulated: bool
    personality: str | None


class RoutesDocument(Model):
    """`k2probe routes --json`: the configured routes."""

    routes: list[PublicRoute]


class QuickstartStep(Model):
    id: str
    status: Literal["pass", "warn", "fail"]
    detail: str
    data: dict[str, Any] = Field(default_factory=dict)


class QuickstartDocument(Model):
    """`k2probe quickstart --json`: every step of the seed path, and where its report went."""

    route: str
    ok: bool
    report: str | None
    steps: list[QuickstartStep]


class Percentiles(Model):
    """A latency distribution in milliseconds (None where nothing was measured)."""

    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None
    n: int


class Goodput(Model):
    share: float | None
    rps: float


class BenchStep(Model):
    """What every step of a sweep measured."""

    requests: int
    ok: int
    failed: dict[str, int]
    rps: float
    output_tps: float
    ttft_ms: Percentiles
    ttfc_ms: Percentiles
    itl_ms: Percentiles
    tpot_ms: Percentiles
    e2e_ms: Percentiles
    sender_lag_ms: Percentiles
    ttft_error_ms: Percentiles
    ttft_merged: float | None
    goodput: Goodput
    wall_s: float


class NodeLatency(Model):
    p50: float | None
    p99: float | None
    n: int


class NodeStep(Model):
    """`--executor ray`: one node's part of a step — its counts, its own TTFT and latency, its client CPU share (of
    the cores its workers used; `saturated` over 90%: its figures then measure the client) and its encoded
    histograms, which added give the step's."""

    node: str
    address: str
    workers: int
    requests: int
    ok: int
    failed: dict[str, int]
    ttft_ms: NodeLatency
    e2e_ms: NodeLatency
    client_cpu: float
    cores_used: int
    saturated: bool
    wall_s: float
    histograms: dict[str, str]


class ClosedLoopStep(BenchStep):
    """A closed-loop step: `concurrency` requests in flight (`nodes`: with --executor ray, each node's part)."""

    concurrency: int
    nodes: list[NodeStep] | None = None
    saturated_nodes: list[str] | None = None


class OpenLoopStep(BenchStep):
    """An open-loop step: Poisson arrivals at `rate` per second (`nodes`: with --executor ray, each node's part)."""

    rate: float
    nodes: list[NodeStep] | None = None
    saturated_nodes: list[str] | None = None


class LengthSetting(Model):
    """A length per request: `mean` tokens, normal around it with `stdev` (0: every request the mean)."""

    mean: float
    stdev: float


class BenchSettings(Model):
    """What a sweep sent and judged by (load/bench.py BenchPlan.settings)."""

    stream: bool
    prompt_tokens: LengthSetting | None  # None: the prompts came from `dataset`
    max_tokens: LengthSetting
    dataset: str | None
    dataset_prompts: int | None
    unique_prompts: bool
    seed: int
    requests: int | None
    duration_s: float | None
    workers: int
    slo_ms: dict[str, float]
    warmup: int
    concurrency: list[int] | Literal["auto"]
    rates: list[float]
    executor: Literal["local", "ray"]


class BenchWarmup(Model):
    """The requests sent before the first step, left out of every figure."""

    requests: int
    ok: int
    failed: dict[str, int]
    concurrency: int | None


class KneeRuleSetting(Model):
    """The saturation sweep's rule (load/sweep.py KneeRule)."""

    start: int
    factor: int
    limit: int
    min_gain: float
    max_failed: float
    max_latency_growth: float
    requests_per_user: int


class Knee(Model):
    """The unbroken step of highest goodput: its load and figures (`metric`: ttft streamed, e2e otherwise)."""

    concurrency: int
    rps: float
    goodput_rps: float
    output_tps: float
    p50_ms: float | None
    p99_ms: float | None
    metric: Literal["ttft", "e2e"]


class BenchSweep(Model):
    """`--concurrency auto`: the rule, the knee it found (None when every step broke) and why the sweep stopped."""

    rule: KneeRuleSetting
    knee: Knee | None
    stopped: str


class ClusterNode(Model):
    node: str
    address: str
    workers: int
    cores: int


class LeftOutNode(Model):
    node: str
    address: str
    why: str


class BenchCluster(Model):
    """`--executor ray`: the nodes the workers ran on, and those the probe left out (and why)."""

    nodes: list[ClusterNode]
    left_out: list[LeftOutNode]


class BenchDocument(Model):
    """`k2probe bench --json`: the settings, the warm-up, each step's latency percentiles, throughput and goodput,
    and the knee of a saturation sweep."""

    route: str
    run_id: str
    emulated: bool
    settings: BenchSettings
    warmup: BenchWarmup | None
    steps: list[ClosedLoopStep | OpenLoopStep]
    sweep: BenchSweep | None
    cluster: BenchCluster | None = None


class ShippedTask(Model):
    suite: str
    id: str
    title: str


class AgentTasksDocument(Model):
    """`k2probe agent --list-tasks --json`: the shipped tasks an agent run can take (`--task SUITE/ID`)."""

    tasks: list[ShippedTask]


def documents() -> dict[str, type[BaseModel]]:
    """Each command with --json → the model of its document (the evaluation's models load only when asked for)."""
    from k2probe.eval.compare import Comparison
    from k2probe.eval.evaluate import EvalOutcome
    from k2probe.proxy.run import ProxyOutcome

    return {"agent": AgentDocument, "agent-tasks": AgentTasksDocument, "audit": AuditDocument,
            "bench": BenchDocument, "chat": ChatDocument,
            "compare": Comparison, "doctor": DoctorDocument, "eval": EvalOutcome, "proxy": ProxyOutcome,
            "quickstart": QuickstartDocument,
            "review": RunDetail, "routes": RoutesDocument, "runs": RunsDocument, "show": RunDetail,
            "smoke": SmokeDocument, "suite-check": SuiteCheckDocument}


def json_schema(name: str) -> dict[str, Any]:
    """The published JSON schema (draft 2020-12) of command `name`'s --json document, as it is serialised."""
    model = documents()[name]
    schema = model.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"k2probe:{name}", **schema}


__all__ = ["documents", "json_schema"]
