"""Runs, one run's detail, and human reviews: how a multimodal call's output becomes accepted or not."""

from __future__ import annotations

from pathlib import Path

from .conftest import route_env
from .media_files import image


def test_review_marks_a_multimodal_run_accepted(cli, emulator, workdir: Path):
    env = route_env(emulator())
    shot = image(workdir / "screen.png", "PNG", (800, 600))
    assert cli("chat", "Review this checkout UI", "--image", str(shot), env=env).code == 0
    runs = cli("runs", "--json").json()["runs"]
    run_id = runs[0]["id"]
    before = cli("show", run_id[:8], "--json").json()
    assert before["accepted"] is None
    media = before["calls"][0]["media"][0]
    assert (media["mime"], media["width"], media["height"], media["delivery"]) == ("image/png", 800, 600, "inline")
    assert media["bytes"] == shot.stat().st_size and before["calls"][0]["latency_ms"] > 0
    after = cli("review", run_id[:8], "--accept", "--repair-minutes", "4", "--note", "good checklist", "--json")
    assert after.code == 0, after.stderr
    detail = after.json()
    assert detail["accepted"] is True and detail["reviews"][0]["repair_minutes"] == 4
    table = cli("show", run_id[:8])
    assert "accepted" in table.stdout and "image/png 800×600" in table.stdout


def test_review_of_an_agent_attempt(cli, workdir: Path):
    assert cli("agent", "--task", "median").code == 0
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    attempt = cli("show", run_id, "--json").json()["attempts"][0]["id"]
    result = cli("review", run_id, "--reject", "--rollback", "--handoff", "--attempt", attempt, "--json")
    assert result.code == 0 and result.json()["reviews"][0]["attempt_id"] == attempt
    assert result.json()["accepted"] is False


def test_review_needs_a_verdict_and_a_known_run(cli, emulator):
    assert cli("chat", "hi", env=route_env(emulator())).code == 0
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    missing = cli("review", run_id)
    assert missing.code == 2 and "--accept or --reject" in missing.stderr
    unknown = cli("review", "ffffffff", "--accept")
    assert unknown.code == 2 and "no run with id starting 'ffffffff'" in unknown.stderr
    negative = cli("review", run_id, "--accept", "--repair-minutes", "-3")
    assert negative.code == 2
