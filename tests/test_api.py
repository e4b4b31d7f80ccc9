"""The public API: `k2probe.emulator()` for a team's own client tests (the README's example, run as it is), the
typed results of `evaluate`, `doctor` and `audit`, and an `import k2probe` that loads nothing heavy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import k2probe
from k2probe.core.results import Outcome
from tests.conftest import SCRUB

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "test_my_client.py"


def _pytest(folder: Path) -> subprocess.CompletedProcess[str]:
    """pytest on a folder outside the repository (no conftest, no repository settings), as a team would run it."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env["K2PROBE_HOME"] = str(folder / "home")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_client.py"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_example_passes_as_written(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "test_my_client.py")
    done = _pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_readme_example_catches_a_client_that_drops_reasoning(tmp_path: Path) -> None:
    """The same tests on a client whose loop drops reasoning_content: the emulator's 400 fails the first test."""
    source = EXAMPLE.read_text(encoding="utf-8")
    broken = source.replace("keep_reasoning: bool = True", "keep_reasoning: bool = False")
    assert broken != source
    (tmp_path / "test_my_client.py").write_text(broken, encoding="utf-8")
    done = _pytest(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 2 passed" in done.stdout
    assert "reasoning_content is missing in assistant tool call message at index 1" in done.stdout


def test_import_k2probe_loads_nothing_heavy() -> None:
    probe = ("import sys, k2probe; heavy = ('openai', 'sqlalchemy', 'httpx', 'starlette', 'uvicorn', 'rich', "
             "'pydantic', 'typer'); print(','.join(m for m in heavy if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""


def test_every_public_name_resolves() -> None:
    for name in k2probe.__all__:
        assert getattr(k2probe, name) is not None, name
    assert callable(k2probe.emulator) and callable(k2probe.evaluate)
    with pytest.raises(AttributeError):
        k2probe.no_such_thing  # noqa: B018


def test_the_emulator_serves_for_the_with_block_only() -> None:
    with k2probe.emulator(personality="lossy-relay", ttft_ms=5, faults={"rate_limit": 0.5}) as emu:
        assert emu.base_url.startswith("http://127.0.0.1:") and emu.base_url.endswith("/v1")
        assert emu.settings.personality == "lossy-relay" and emu.settings.faults == {"rate_limit": 0.5}
        request = urllib.request.Request(f"{emu.base_url}/models", headers={"Authorization": f"Bearer {emu.api_key}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{emu.base_url}/models", timeout=5)


def test_bad_emulator_settings_say_which() -> None:
    with pytest.raises(ValueError, match="unknown personality 'nope'"), k2probe.emulator(personality="nope"):
        pass


def test_evaluate_on_the_built_in_emulator_returns_its_outcome(workdir: Path) -> None:
    outcome = k2probe.evaluate("humaneval", limit=2)
    assert isinstance(outcome, k2probe.EvalOutcome)
    assert [s.outcome for s in outcome.samples] == [Outcome.PASSED] * 2
    overall = outcome.metrics.overall
    assert overall.accepted_rate.value == 1.0 and overall.samples.passed == 2
    store = k2probe.Store()
    try:
        assert store.find_run(outcome.run_id[:8]).status == "finished"
    finally:
        store.dispose()


def test_evaluate_against_an_emulator_of_your_own(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A route configured in the environment, pointed at an emulator whose answers are all wrong: every sample fails."""
    with k2probe.emulator(wrong_rate=1.0) as emu:
        monkeypatch.setenv("AI_GATEWAY_BASE_URL", emu.base_url)
        monkeypatch.setenv("AI_GATEWAY_API_KEY", emu.api_key)
        outcome = k2probe.evaluate("humaneval", limit=2)
    assert [s.outcome for s in outcome.samples] == [Outcome.FAILED] * 2
    assert outcome.metrics.overall.accepted_rate.value == 0.0


def test_evaluate_without_a_suite_says_what_to_give(workdir: Path) -> None:
    with pytest.raises(k2probe.UsageError, match="give a suite"):
        k2probe.evaluate()
    with pytest.raises(k2probe.UsageError, match="unknown suite 'nope'"):
        k2probe.evaluate("nope")


def test_doctor_and_audit_on_a_route_to_the_emulator(workdir: Path) -> None:
    with k2probe.emulator() as emu:
        diagnosis = k2probe.doctor(emu.route())
        assert isinstance(diagnosis, k2probe.Diagnosis) and diagnosis.diagnosis == "ok"
        assert k2probe.audit(emu.route()).verdict == "faithful"
    with k2probe.emulator(personality="lossy-relay") as emu:
        notices: list[str] = []
        assert k2probe.doctor(emu.route(), on_notices=notices.extend).diagnosis == "reasoning_dropped"
        assert "reasoning_dropped" in {f.id for f in k2probe.audit(emu.route()).findings}


def test_run_agent_on_a_shipped_task_and_on_your_repository(workdir: Path) -> None:
    """A shipped task solved and verified by its hidden tests; a statement on a repository whose test cannot pass
    (the emulated model knows no fix for it) ends `failed`, the model's work — both typed AgentResults."""
    solved = k2probe.run_agent("parse-total")
    assert isinstance(solved, k2probe.AgentResult)
    assert solved.passed and solved.verification.reason == "hidden tests passed"
    repo = workdir / "r"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_x.py").write_text("def test_fails():\n    assert False\n")
    failed = k2probe.run_agent("make the test pass", repo=repo, max_steps=2)
    assert not failed.passed and failed.verification.status == "failed"
    with pytest.raises(k2probe.UsageError, match="no test_cmd and no tests"):
        (workdir / "empty").mkdir()
        k2probe.run_agent("x", repo=workdir / "empty")


def test_compare_two_evaluations(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of the same suite on two emulators, one answering everything wrong: the comparison holds both
    routes, and the faithful one is the reference's better."""
    first = k2probe.evaluate("humaneval", limit=2)
    with k2probe.emulator(wrong_rate=1.0) as emu:
        monkeypatch.setenv("AI_GATEWAY_BASE_URL", emu.base_url)
        monkeypatch.setenv("AI_GATEWAY_API_KEY", emu.api_key)
        second = k2probe.evaluate("humaneval", limit=2)
    result = k2probe.compare(first.run_id, second.run_id)
    assert isinstance(result, k2probe.Comparison) and result.run_ids == [first.run_id, second.run_id]
    rates = {label: figures.accepted_rate.value for label, figures in result.routes.items()}
    assert sorted(rates.values()) == [0.0, 1.0] and len(result.differences) == 1
