"""A suite of your own in one Python file: `k2probe eval examples/own_suite.py` (or `k2probe.evaluate(Capitals())`).

The file is your code and runs inside k2probe, like a pytest conftest. Code the *model* writes must never run here:
judge it through `executor` (the sandbox), e.g.
`await executor.exec("python answer.py", folder, Limits(), Runtime.own())`."""

from __future__ import annotations

from typing import Any

from k2probe import Attempt, BaseSuite, Case, Outcome, RouteModel, Verdict


class Capitals(BaseSuite):
    name = "capitals"

    def samples(self) -> list[Case]:
        """Every sample, in a stable order, each with a unique id (what --tasks names)."""
        return [Case("france", "What is the capital of France? Answer in one word.", "Paris"),
                Case("japan", "What is the capital of Japan? Answer in one word.", "Tokyo")]

    async def solve(self, sample: Case, model: RouteModel) -> Attempt:
        """Ask the route; model.chat counts the tokens, cost and latency of this sample."""
        answer = (await model.chat(sample.input)).content
        return Attempt(answer, completion=answer)

    async def score(self, sample: Case, attempt: Attempt, executor: Any) -> Verdict:
        """passed / failed is the model's work; raise (or return Outcome.ERROR) when the harness could not judge."""
        right = sample.target.lower() in (attempt.completion or "").lower()
        return Verdict(outcome=Outcome.PASSED if right else Outcome.FAILED,
                       reason=None if right else f"expected {sample.target}", details={"target": sample.target})

    def metrics(self, samples: list[Any]) -> dict[str, Any]:
        """What this suite adds to each route's metrics (`suite_metrics` in --json)."""
        words = [len((s.completion or "").split()) for s in samples if s.completion is not None]
        return {"capitals": {"mean_answer_words": sum(words) / len(words) if words else None, "n": len(words)}}


suite = Capitals()
