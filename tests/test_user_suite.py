"""A user suite — a folder with suite.toml and one folder per task — is checked and evaluated like a shipped one."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
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


def _hostile_suite(workdir: Path) -> Path:
    suite = workdir / "hostile"
    shutil.copytree(EXAMPLE, suite)
    return suite


def _refused(cli, suite: Path, named: Path, kind: str) -> None:
    """`suite check` (with --json) and `eval` refuse in one line naming the entry, exit 2, quickly, reading nothing."""
    for args in (("suite", "check", str(suite), "--json"), ("eval", str(suite), "--json")):
        started = time.monotonic()
        result = cli(*args, timeout=60)
        assert time.monotonic() - started < 60
        assert result.code == 2, (args, result.stdout[-500:], result.stderr[-500:])
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert f"{named} is {kind}" in result.stderr and "Traceback" not in result.stderr
        assert "root-only-canary" not in result.stdout + result.stderr


def test_a_device_node_in_a_suite_is_refused_before_anything_is_copied(cli, workdir):
    """The issue's /dev/zero in repo/: 6.3 GB written to /tmp and a check that never ended."""
    suite = _hostile_suite(workdir)
    node = suite / "leap-year" / "repo" / "zero"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers (the tests run as root)
    before = sorted(Path(tempfile.gettempdir()).glob("k2probe-preflight-*"))
    _refused(cli, suite, node, "a device node")
    assert sorted(Path(tempfile.gettempdir()).glob("k2probe-preflight-*")) == before


def test_a_fifo_in_hidden_tests_is_refused(cli, workdir):
    suite = _hostile_suite(workdir)
    fifo = suite / "leap-year" / "hidden_tests" / "pipe"
    os.mkfifo(fifo)
    _refused(cli, suite, fifo, "a FIFO")


def test_a_link_to_a_root_only_file_is_refused_and_never_read(cli, workdir, tmp_path):
    """The issue's link in repo/ whose target's content showed in `suite check --json`."""
    secret = tmp_path / "secret.txt"
    secret.write_text("root-only-canary\n")
    secret.chmod(0o600)
    suite = _hostile_suite(workdir)
    link = suite / "leap-year" / "repo" / "calendarx" / "notes.txt"
    os.symlink(secret, link)
    atime = secret.stat().st_atime_ns
    _refused(cli, suite, link, "a symbolic link")
    assert secret.stat().st_atime_ns == atime


def test_a_hidden_tests_link_is_refused(cli, workdir, tmp_path):
    """The issue's hidden_tests link into root's home, which was mounted into the sandbox."""
    elsewhere = tmp_path / "elsewhere"
    suite = _hostile_suite(workdir)
    shutil.move(suite / "leap-year" / "hidden_tests", elsewhere)
    os.symlink(elsewhere, suite / "leap-year" / "hidden_tests")
    _refused(cli, suite, suite / "leap-year" / "hidden_tests", "a symbolic link")


def test_the_emulator_says_once_that_it_cannot_play_a_users_suite(cli, workdir):
    """On the built-in emulator a user's suite scores nothing: the run says why, before its samples, once."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "suite"
    result = cli("eval", str(example), "--max-error-rate", "1", timeout=600)
    said = [line for line in result.stderr.splitlines() if "plays only suites that script it" in line]
    assert len(said) == 1 and "cannot solve the tasks" in said[0], result.stderr[-2000:]
    shipped = cli("eval", "basic", "--tasks", "slugify", timeout=600)
    assert shipped.code == 0 and "plays only suites" not in shipped.stderr
