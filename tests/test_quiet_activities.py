"""Activities return results and print nothing: called from Python, bench, audit and quickstart write nothing to the
terminal (file descriptors 1 and 2 checked), hand their notices and steps to the caller's callbacks, and return typed
results; the CLI renders those same results."""

from __future__ import annotations

from k2probe import api
from k2probe.recording.store import Store


def test_bench_returns_its_steps_and_prints_nothing(workdir, capfd):
    notices: list[list[str]] = []
    rows: list[dict[str, object]] = []
    outcome = api.bench(concurrency=[2], requests=6, workers=1, max_tokens=8, on_notices=notices.append,
                        on_step=rows.append)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    assert outcome.emulated and [s["ok"] for s in outcome.steps] == [6] and rows == outcome.steps
    assert any("emulator" in line for line in notices[0]), notices
    store = Store()
    try:
        run = store.find_run(outcome.run_id)
    finally:
        store.dispose()
    assert run.command == "bench" and run.status == "finished" and (run.summary or {})["steps"] == outcome.steps


def test_audit_returns_its_findings_and_prints_nothing(workdir, capfd):
    result = api.audit()
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    assert result.verdict == "faithful" and result.probes, result.as_json()


def test_quickstart_hands_each_step_to_the_caller_and_prints_nothing(workdir, capfd):
    steps: list[str] = []
    result = api.quickstart(on_step=lambda step: steps.append(step.id))
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    assert steps == ["doctor", "smoke", "streaming", "multimodal", "agent", "snippets"] == [s.id for s in result.steps]
    assert result.report is not None and result.report.endswith(".html")
