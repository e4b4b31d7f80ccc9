"""A user suite — a folder with suite.toml and one folder per task — is checked and evaluated like a shipped one."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "suite"


def test_the_readme_example_suite_passes_suite_check(cli, workdir):
    result = cli("suite", "check", str(EXAMPLE), "--json", timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["ok"] and [t["task"] for t in data["tasks"]] == ["example/leap-year"]


def test_a_wrong_solution_fails_the_check_and_a_broken_suite_is_one_line(cli, workdir):
    suite = workdir / "mine"
    shutil.copytree(EXAMPLE, suite)
    (suite / "leap-year" / "solution" / "calendarx" / "leap.py").write_text("def is_leap(year):\n    return False\n")
    result = cli("suite", "check", str(suite), "--json", timeout=300)
    assert result.code == 1 and "the reference solution does not pass" in result.stdout
    (suite / "leap-year" / "task.toml").write_text('title = "no statement"\n')
    broken = cli("suite", "check", str(suite))
    assert broken.code == 2 and "`statement` is missing" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


def test_eval_of_a_user_suite_on_the_emulator_judges_the_model_not_the_harness(cli, workdir):
    result = cli("eval", str(EXAMPLE), "--json", timeout=300)
    assert result.code == 0, result.stderr
    [sample] = result.json()["samples"]
    assert sample["task_id"] == "leap-year"
    # the emulator has no script for a user's task: it changes nothing, and the hidden tests say no
    assert sample["outcome"] == "failed", sample
