"""`k2probe report RUN` pages a person can act on, rendered in real headless Chromium (Debian `chromium`), offline:
every failure shows the model's code (or patch and transcript), the failing assertion and the model's line, never
k2probe's own frames; a sample without an answer says why; passed samples are listed; model output is shown, never
run; agent, bench and quickstart runs have pages too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import route_env
from .test_report import dump_dom

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="the sandbox needs bubblewrap")

OWN_FRAMES = ("forkrun", "checker.py", "callee", "site-packages/k2probe", "src/k2probe", "k2probe/sandbox")


def _dom(html: Path, out: Path) -> str:
    """The page's DOM after load in headless Chromium (scripts, if any ran, would have changed it)."""
    done = dump_dom(html, out)
    assert "<body" in done.stdout, done.stderr[-2000:]
    return done.stdout


def _text(dom: str) -> str:
    import html

    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def _sections(dom: str) -> dict[str, str]:
    """Each sample's block on the page (non-passes), by task id."""
    blocks = re.split(r'<div class="sample ', dom.split('id="problems"', 1)[1].split('id="passed"', 1)[0])[1:]
    found = {}
    for block in blocks:
        task = re.search(r"<h3>([^<]+?) · route", block)
        assert task, block[:300]
        found[task.group(1)] = block
    return found


def _report(cli, run_id: str, path: Path) -> Path:
    written = cli("report", run_id[:8], "--html", str(path))
    assert written.code == 0, written.stderr
    assert f"wrote {path}" in written.stderr
    return path


def test_a_humaneval_report_with_wrong_answers_shows_each_failures_code_and_assertion_in_chromium(cli, emulator,
                                                                                                   workdir):
    server = emulator(wrong_rate=0.5, seed=5, faults={"quota": 0.2})
    result = cli("eval", "humaneval", "--limit", "10", "--json", env=route_env(server))
    data = result.json()
    samples = data["samples"]
    failed = [s for s in samples if s["outcome"] == "failed"]
    errors = [s for s in samples if s["outcome"] == "error"]
    passed = [s for s in samples if s["outcome"] == "passed"]
    assert failed and errors and passed, [(s["task_id"], s["outcome"]) for s in samples]
    for s in failed:  # the verdict itself names the failing assertion and the model's line
        assert re.search(r"assert .*candidate\(", s["proof"]) and "the model's code, line" in s["proof"], s["proof"]

    dom = _dom(_report(cli, data["run_id"], workdir / "eval.html"), workdir)
    text = _text(dom)
    sections = _sections(dom)
    for s in failed:
        block = sections[s["task_id"]]
        shown = _text(block)
        assert "failing assertion (test line" in shown and re.search(r"assert .*candidate\(", shown), shown[:2000]
        assert "returned None" in shown  # the call and what the model's function answered
        marked = re.search(r'<span class="marked"><i>(\d+)</i>([^<]*)</span>', block)
        assert marked and "return None" in marked.group(2), block[:3000]  # the model's line, marked in its code
        assert f"the model's code, line {marked.group(1)}: return None" in shown
        assert "def " in shown  # the model's whole completion is on the page, not just the verdict
    for s in errors:
        shown = _text(sections[s["task_id"]])
        assert "no answer: quota_exhausted" in shown
        assert not re.search(r"Traceback|FAILURES|AssertionError|failing assertion", shown), shown
    listed = _text(dom.split('id="passed"', 1)[1])
    assert f"show the {len(passed)} passed sample" in listed
    assert all(s["task_id"] in listed for s in passed)
    assert not [frame for frame in OWN_FRAMES if frame in text], text[:3000]


def test_model_output_is_shown_never_run_and_a_raising_answer_points_at_its_line(cli, emulator, workdir):
    hostile = ("    document = '<script>document.body.setAttribute(\"data-pwned\", \"yes\")</script>'\n"
               "    return '<img src=x onerror=\"document.body.setAttribute(\\'data-pwned\\', \\'img\\')\">'\n")
    raising = "    total = 0\n    raise ValueError('nope </pre><script>alert(1)</script>')\n"
    path = workdir / "samples.jsonl"
    path.write_text("".join(json.dumps({"task_id": task, "completion": completion}) + "\n"
                            for task, completion in (("HumanEval/0", hostile), ("HumanEval/2", raising))))
    result = cli("eval", "humaneval", "--samples", str(path), "--json", env=route_env(emulator()))
    data = result.json()
    assert {s["task_id"]: s["outcome"] for s in data["samples"]} == {"HumanEval/0": "failed", "HumanEval/2": "failed"}
    html = _report(cli, data["run_id"], workdir / "eval.html")
    dom = _dom(html, workdir)
    assert "data-pwned=" not in re.sub(r"&[a-z]+;|&#\d+;", "", dom.split("<body", 1)[1].split(">", 1)[0])
    assert not re.search(r"<body[^>]*data-pwned", dom) and "<script" not in html.read_text().lower()
    sections = _sections(dom)
    assert "<script>document.body.setAttribute" in _text(sections["HumanEval/0"])  # shown as text
    raised = _text(sections["HumanEval/2"])
    assert "the function raised ValueError: nope </pre><script>alert(1)</script>" in raised
    assert "the model's code, line 2: raise ValueError(" in raised


def test_a_failed_repository_sample_shows_the_patch_transcript_and_the_failing_test_lines(cli, emulator, workdir):
    suite = Path(__file__).resolve().parents[1] / "examples" / "suite"
    result = cli("eval", str(suite), "--json", env=route_env(emulator()), timeout=300)
    data = result.json()
    failed = [s for s in data["samples"] if s["outcome"] == "failed"]
    assert failed, data["samples"]
    assert "assert [y for y in" in failed[0]["proof"] and "FAILURES" not in failed[0]["proof"]
    dom = _dom(_report(cli, data["run_id"], workdir / "eval.html"), workdir)
    block = _sections(dom)[failed[0]["task_id"]]
    shown = _text(block)
    assert "test_gregorian_rules" in shown and "> assert [y for y in (1600, 1700" in shown
    assert "At index 1 diff: 1700 != 2000" in shown
    assert "Transcript (" in shown and "Patch" in shown and 'class="reasoning"' in block
    assert "<details class=\"reasoning\" open" not in block  # reasoning collapsed
    assert not [frame for frame in OWN_FRAMES if frame in _text(dom)]


def test_report_draws_an_agent_run_its_task_transcript_verdict_and_cost(cli, emulator, workdir):
    result = cli("agent", "--task", "parse-total", "--json", env=route_env(emulator()), timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    dom = _dom(_report(cli, run_id, workdir / "agent.html"), workdir)
    text = _text(dom)
    assert "Task parse-total" in text and "parse_total(row) crashes" in text
    assert "Verdict: passed — hidden tests passed" in text
    assert f"{data['steps']} steps" in text and "model latency" in text and "cost $" in text
    for tool in ("list_files", "read_file", "apply_patch", "run_tests"):
        assert tool in text, tool
    assert dom.count('<details class="reasoning">') >= 1 and "diff --git a/billing/rows.py" in text
    assert '"path": "billing/rows.py"' in text or 'path: "billing/rows.py"' in text  # a tool call's arguments
    assert "billing/__init__.py" in text  # a tool's result


def test_report_draws_a_bench_run_from_the_store(cli, emulator, workdir):
    result = cli("bench", "--concurrency", "1,2", "--requests", "8", "--json", env=route_env(emulator()))
    assert result.code == 0, result.stderr
    steps = result.json()["steps"]
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    dom = _dom(_report(cli, run_id, workdir / "bench.html"), workdir)
    text = _text(dom)
    for step in steps:
        assert f"concurrency {step['concurrency']}" in text and f"{step['rps']:.1f}" in text
    assert "measured " in text and dom.count("<polyline") >= 3 and "milliseconds" in dom


def test_report_draws_a_quickstart_run_expected_400s_apart_from_failures(cli, emulator, workdir):
    result = cli("quickstart", env=route_env(emulator()), timeout=300)
    assert result.code == 0, result.stderr
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    dom = _dom(_report(cli, run_id, workdir / "quickstart.html"), workdir)
    text = _text(dom)
    for step in ("doctor", "smoke", "streaming", "multimodal", "agent", "snippets"):
        assert f'id="step-{step}"' in dom, step
    assert "milliseconds (bar: end-to-end latency; mark: time to first token)" in text  # an axis with its unit
    assert "refused as the check expected" in text and "HTTP 400, as expected" in text
    assert 'fill="#e57373"' not in dom  # nothing drawn as failed: every 400 here was a passed check
    labels = re.findall(r'<text x="(\d+)" y="(\d+)" font-size="11" text-anchor="end">([^<]*)</text>', dom)
    assert labels and all(len(label) <= 300 / 6.2 for _, _, label in labels)  # cut to their column, never over a bar
    assert len({y for _, y, _ in labels}) == len(labels)  # one row each


def test_a_failing_quickstart_page_shows_each_failing_steps_fix(cli, emulator, workdir):
    result = cli("quickstart", env=route_env(emulator(), key="sk-not-the-key"), timeout=300)
    assert result.code != 0
    page = Path(re.search(r"report: (\S+\.html)", result.stdout + result.stderr).group(1))
    text = _text(_dom(page, workdir))
    assert "fix: key: check the key in AI_GATEWAY_API_KEY" in text  # doctor's own fix
    for step in ("smoke", "streaming"):
        row = _text(re.search(rf'<tr id="step-{step}">.*?</tr>', page.read_text(), re.S).group(0))
        assert "HTTP 401" in row and "fix: check the key in AI_GATEWAY_API_KEY" in row, row
    assert "fix the smoke step first" in text
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    again = _text(_dom(_report(cli, run_id, workdir / "again.html"), workdir))
    assert "fix: check the key in AI_GATEWAY_API_KEY" in again  # the same page, from the store


@pytest.mark.parametrize("second_call", ["while True:\n            pass", "import os\n        os._exit(0)",
                                         "raise SystemExit(3)"])
def test_asking_a_failed_candidate_for_its_line_cannot_change_its_verdict(second_call):
    """The checker asks which line a wrong value came from only after the verdict is given, bounded in time: a
    candidate that hangs, dies or exits when asked stays `failed`, with the assertion and no line of its choosing."""
    import time

    from k2probe.sandbox.isolation import isolation
    from k2probe.sandbox.programs import Program, verify_programs
    from k2probe.tasks.humaneval import problems

    problem = problems()["HumanEval/2"]
    completion = ("    import builtins\n    if getattr(builtins, 'seen', False):\n"
                  f"        {second_call}\n    builtins.seen = True\n    return None\n")
    started = time.monotonic()
    verdict = verify_programs({"it": Program(problem.prompt, completion, problem.test, problem.entry_point)},
                              timeout_s=3.0, iso=isolation("bwrap"))["it"]
    assert time.monotonic() - started < 30
    assert verdict.status == "failed" and verdict.reason == "AssertionError: assert candidate(3.5) == 0.5", verdict
    assert verdict.details["answered"] == "returned None" and "model_line" not in verdict.details, verdict.details


def test_a_failed_toolcalls_sample_shows_what_the_model_answered(cli, emulator, workdir):
    result = cli("eval", "toolcalls", "--limit", "8", "--json", env=route_env(emulator(tool_fault_rate=0.6, seed=2)))
    data = result.json()
    failed = [s for s in data["samples"] if s["outcome"] == "failed"]
    assert failed, data["samples"]
    sections = _sections(_dom(_report(cli, data["run_id"], workdir / "eval.html"), workdir))
    for s in failed:
        shown = _text(sections[s["task_id"]])
        assert re.search(r"the model's answer 1 (tool call: \w+\(|<tool_call>|\S)", shown), shown  # text or calls
