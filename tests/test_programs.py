"""HumanEval programs judged so that the code judged cannot touch its verdict: each candidate alone in a sandbox of
its own, serving calls as plain data to a checker outside. Verdicts agree with the official harness on all 164
problems; every forgery or sabotage ends `failed` for its author and changes no one else's verdict."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from k2probe.sandbox.isolation import isolation
from k2probe.sandbox.programs import Program, verify_programs
from k2probe.sandbox.runtime import Runtime
from k2probe.tasks.humaneval import problems

from .sabotage import ATTACKS, WRONG

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="the sandbox needs bubblewrap")


def _program(task: str, completion: str) -> Program:
    problem = problems()[task]
    return Program(problem.prompt, completion, problem.test, problem.entry_point)


def test_all_164_canonical_solutions_pass_and_all_164_return_none_bodies_fail():
    """The truth check of the codec and the proxy: tests that call the prompt's helpers (HumanEval/32 poly,
    /38 encode_cyclic, /50 encode_shift) and compare floats, tuples, nested lists all judge as the official harness."""
    programs = {}
    for task, problem in problems().items():
        programs[task] = _program(task, problem.canonical_solution)
        programs[f"{task} wrong"] = _program(task, WRONG)
    verdicts = verify_programs(programs, iso=isolation("bwrap"))
    wrong_verdicts = {k: v for k, v in verdicts.items() if (v.status == "passed") == k.endswith(" wrong")}
    assert wrong_verdicts == {}
    assert all(v.status == "failed" for k, v in verdicts.items() if k.endswith(" wrong"))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_forger_fails_and_the_others_keep_their_verdicts(attack):
    """One hostile program among correct and wrong ones: it is `failed`, never `passed` or `error`; the correct ones
    pass and the wrong ones fail whatever it does (planted modules, stopped or killed processes, forged replies)."""
    tasks = list(problems())
    programs = {"hostile": _program(tasks[0], ATTACKS[attack])}
    for task in tasks[1:6]:
        programs[f"correct {task}"] = _program(task, problems()[task].canonical_solution)
    for task in tasks[6:9]:
        programs[f"wrong {task}"] = _program(task, WRONG)
    verdicts = verify_programs(programs, iso=isolation("bwrap"))
    assert verdicts["hostile"].status == "failed", verdicts["hostile"]
    for key, verdict in verdicts.items():
        if key.startswith("correct"):
            assert verdict.status == "passed", (key, verdict)
        if key.startswith("wrong"):
            assert verdict.status == "failed", (key, verdict)


def test_non_plain_answers_are_refused_with_the_reason():
    verdicts = verify_programs({"equal": _program("HumanEval/0", ATTACKS["always-equal"]),
                                "subclass": _program("HumanEval/0", ATTACKS["int-subclass"]),
                                "generator": _program("HumanEval/0", "    yield True\n")}, iso=isolation("bwrap"))
    assert all(v.status == "failed" and "not plain data" in v.reason for v in verdicts.values()), verdicts


def test_leaving_early_raising_hanging_and_syntax_errors_fail(tmp_path):
    task = "HumanEval/0"
    verdicts = verify_programs({
        "exit": _program(task, "    import sys\n    sys.exit(0)\n"),
        "_exit": _program(task, "    import os\n    os._exit(0)\n"),
        "raise": _program(task, "    raise ValueError('wrong answer')\n"),
        "syntax": _program(task, "    def broken(:\n"),
        "hang": _program(task, "    while True:\n        pass\n"),
        "load-hang": _program(task, WRONG + "while True:\n    pass\n"),
        "print": _program(task, "    print('debug', flush=True)\n" + problems()[task].canonical_solution),
    }, timeout_s=1.0, iso=isolation("bwrap"))
    assert {k: v.status for k, v in verdicts.items()} == {**dict.fromkeys(verdicts, "failed"), "print": "passed"}
    assert "ValueError: wrong answer" in verdicts["raise"].reason
    assert "SyntaxError" in verdicts["syntax"].output
    assert "timed out" in verdicts["hang"].reason and "timed out" in verdicts["load-hang"].reason


def test_a_program_sees_no_host_file_no_network_and_no_other_process(tmp_path):
    secret = Path.home() / f".k2probe-test-secret-{tmp_path.name}"
    secret.write_text("sk-host-secret")
    task = "HumanEval/0"
    right = problems()[task].canonical_solution
    try:
        verdicts = verify_programs({
            "home": _program(task, f"    open({str(secret)!r}).read()\n" + right),
            "net": _program(task, "    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n" + right),
            "alone": _program(task, "    import os\n    assert sorted(int(p) for p in os.listdir('/proc') "
                                    "if p.isdigit()) == [1, os.getpid()], os.listdir('/proc')\n" + right),
        }, iso=isolation("bwrap"))
    finally:
        secret.unlink()
    assert verdicts["home"].status == "failed" and verdicts["net"].status == "failed"
    assert verdicts["alone"].status == "passed", verdicts["alone"]  # bwrap's init and itself: nothing else


def test_error_only_when_the_sandbox_cannot_start():
    """`error` is k2probe's: the sandbox did not start, before any model code ran."""
    own = Runtime.own()
    broken = Runtime("/nonexistent/python3", own.path)
    verdicts = verify_programs({"any": _program("HumanEval/0", problems()["HumanEval/0"].canonical_solution)},
                               iso=isolation("bwrap"), runtime=broken)
    assert verdicts["any"].status == "error" and "did not start" in verdicts["any"].reason


def test_many_programs_at_once_keep_their_own_verdicts():
    tasks = list(problems())[:40]
    programs = {f"{task} {kind}": _program(task, problems()[task].canonical_solution if kind == "right" else WRONG)
                for task, kind in itertools.product(tasks, ("right", "wrong"))}
    verdicts = verify_programs(programs, iso=isolation("bwrap"))
    assert all((v.status == "passed") == k.endswith("right") for k, v in verdicts.items())


@pytest.mark.parametrize("says_running, status", [(False, "error"), (True, "failed")])
def test_a_checker_stuck_before_the_models_code_ran_is_k2probes_error_after_it_the_models_failure(
        monkeypatch, says_running, status):
    """Blame by what the checker said: stuck before `running` (a slow sandbox or fork server) is `error`; stuck after
    it (the test's work on the candidate's answers never ended) is `failed`. The checker here is a real process that
    reads its job and then hangs."""
    import subprocess
    import sys

    from k2probe.sandbox import programs
    from k2probe.sandbox.checker import RUNNING

    monkeypatch.setattr(programs, "BEFORE_RUNNING_S", 1.0)
    monkeypatch.setattr(programs, "SLACK_S", 0.5)
    said = RUNNING if says_running else b""
    script = f"import sys, time; sys.stdin.readline(); sys.stdout.buffer.write({said!r}); sys.stdout.flush(); time.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    verdict = programs._ask(worker, {"key": "k", "timeout": 0.5})
    assert verdict.status == status, verdict
    assert worker.poll() is not None  # killed and waited for: its cgroup can go


def test_a_sample_cancelled_while_its_program_runs_leaves_the_checkers_serving(monkeypatch):
    """A run that stops (a failing store, --timeout) cancels the samples still waiting on verdicts: a checker that
    finishes such a program drops the verdict quietly and goes on serving (it raised InvalidStateError in its thread)."""
    import threading
    import time

    from k2probe.sandbox.programs import submit

    crashes: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_value))
    slow = "    import time\n    time.sleep(1.0)\n    return None\n"
    future = submit("slow", _program("HumanEval/0", slow), iso=isolation("bwrap"))
    time.sleep(0.5)  # taken by a checker, running now
    future.cancel()
    after = submit("next", _program("HumanEval/2", problems()["HumanEval/2"].canonical_solution),
                   iso=isolation("bwrap")).result(timeout=60)
    time.sleep(1.5)
    assert crashes == [] and after.status == "passed"
