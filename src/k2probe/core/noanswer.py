"""One rule, used by `agent` and by every `eval` sample: a route that never answered usefully (4xx, 5xx, a broken
connection or a timeout, retries spent) leaves nothing of the model's to judge. That sample or attempt is `error`:
it is never verified (no hidden tests run) and never counted against the model; `agent` exits 2 on it."""

from __future__ import annotations

from k2probe.core.failures import Failure


def unanswered(failure: Failure | None, attempts: int) -> str | None:
    """The reason an attempt is `error` because its route did not answer (after `attempts` requests for the last
    turn), or None when the route answered."""
    if failure is None:
        return None
    status = f"HTTP {failure.status}" if failure.status is not None else "no HTTP answer"
    return (f"no answer: {failure.cause} ({failure.type}, {status}) after {attempts} attempt(s): "
            f"{failure.message[:200]}")
