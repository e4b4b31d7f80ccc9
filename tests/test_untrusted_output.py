"""Output a model or a gateway controls, through the real CLI: a key echoed back split across SSE chunks never shows
(terminal, --json, the store), rich markup is shown verbatim, terminal escape sequences are shown inert, and a JUnit
file of failures full of control characters is still well-formed XML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from k2probe.core.results import Outcome, Sample, Usage, Verdict
from k2probe.report.junit import write_junit
from k2probe.tasks.humaneval import problems

from .hostile import HostileModel
from .untrusted_server import UntrustedGateway, split

KEY = "zq-live-canary-7f3a9c2e1b5d4860aa"  # shaped like no known key: only redaction of the whole stream catches it
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")  # what must never reach a terminal raw
HOSTILE = ("[/INST] arr[i] [bold]x[/bold] :smile: \x1b[31mred\x1b[0m \x1b]8;;http://evil.example/\x07link"
           "\x1b]8;;\x07 \x1b]52;c;aGVsbG8=\x07 \x9b2J back\x08\x08 over\rwrite \u202eevil\n")


@pytest.fixture
def gateway():
    started: list[UntrustedGateway] = []

    def start(script) -> UntrustedGateway:
        started.append(UntrustedGateway(script).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _env(server: UntrustedGateway) -> dict[str, str]:
    return {"AI_GATEWAY_API_KEY": KEY, "AI_GATEWAY_BASE_URL": server.base_url}


def _echo_key(key: str, _body: dict) -> tuple[list[str], list[str]]:
    """The caller's key back, cut in several places, in the reasoning and in the answer."""
    return (["I saw ", *split(key, 2), " in the header."], ["Your key: ", *split(key, 3), " — keep it safe."])


def _home_bytes(workdir: Path) -> bytes:
    """Every byte under K2PROBE_HOME: the SQLite store (and its journal), trajectories, saved records."""
    return b"".join(p.read_bytes() for p in sorted((workdir / "home").rglob("*")) if p.is_file())


def test_a_key_split_across_sse_chunks_never_shows_in_the_terminal_json_or_store(cli, workdir, gateway):
    server = gateway(_echo_key)
    shown = cli("chat", "what is my key?", "--stream", env=_env(server))
    assert shown.code == 0, shown.stderr
    assert server.requests and server.requests[0]["stream"] is True  # the key really came back over SSE, in pieces
    assert KEY not in shown.stdout + shown.stderr
    # piped: the answer alone on stdout, the reasoning on stderr (labelled)
    assert "Your key: *** — keep it safe." in shown.stdout and "I saw *** in the header." in shown.stderr

    as_json = cli("chat", "what is my key?", "--stream", "--json", env=_env(server))
    assert as_json.code == 0, as_json.stderr
    assert KEY not in as_json.stdout + as_json.stderr
    document = as_json.json()
    assert document["answer"] == "Your key: *** — keep it safe." and document["reasoning"] == "I saw *** in the header."

    stored = _home_bytes(workdir)
    assert b"what is my key?" in stored  # the calls were recorded here...
    assert KEY.encode() not in stored  # ...and nothing recorded holds the key


@pytest.mark.parametrize("mode", [[], ["--stream"]])
def test_markup_and_escape_sequences_in_an_answer_are_shown_verbatim_and_inert(cli, gateway, mode):
    server = gateway(lambda _key, _body: ([HOSTILE[:30]], split(HOSTILE, 7)))
    result = cli("chat", "hello", *mode, env=_env(server))
    assert result.code == 0, result.stderr
    assert "internal error" not in result.stderr
    assert "[/INST] arr[i] [bold]x[/bold] :smile:" in result.stdout  # verbatim, not parsed as markup or emoji
    assert "␛[31mred␛[0m" in result.stdout and "␛]52;c;aGVsbG8=␇" in result.stdout  # visible, inert
    assert "back␈␈ over␍write \\u202eevil" in result.stdout
    assert not RAW_CONTROL.search(result.stdout + result.stderr)


def test_json_keeps_the_answer_exact_and_its_bytes_inert(cli, gateway):
    server = gateway(lambda _key, _body: ([], split(HOSTILE, 5)))
    result = cli("chat", "hello", "--stream", "--json", env=_env(server))
    assert result.code == 0, result.stderr
    assert result.json()["answer"] == HOSTILE  # the data is the model's, character for character
    assert not RAW_CONTROL.search(result.stdout)  # but written escaped (\u001b, \u009b, \u202e)


def test_markup_and_escapes_in_a_route_name_are_shown_verbatim(cli, workdir, gateway):
    server = gateway(lambda _key, _body: ([], ["fine"]))
    name = "[/INST]\x1b]0;pwned\x07[bold]r[/bold]"
    (workdir / "k2probe.toml").write_text(
        f'[routes.{json.dumps(name)}]\nbase_url = "{server.base_url}"\napi_key_env = "AI_GATEWAY_API_KEY"\n')
    listed = cli("routes", env={"AI_GATEWAY_API_KEY": KEY})
    assert listed.code == 0, listed.stderr
    assert "[/INST]␛]0;pwned␇[bold]r[/bold]" in listed.stdout and not RAW_CONTROL.search(listed.stdout)
    chat = cli("chat", "hello", "--route", name, env={"AI_GATEWAY_API_KEY": KEY})
    assert chat.code == 0, chat.stderr
    assert "fine" in chat.stdout and not RAW_CONTROL.search(chat.stdout + chat.stderr)


def test_agent_shows_tool_names_results_and_diff_inert(cli, workdir, tmp_path):
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    evil = "\x1b]52;c;aGk=\x07[/INST] arr[i] \x1b[2J\x9b6n\n"
    model = HostileModel([("[/INST]\x1b]0;pwned\x07\x1b[2J", {}),
                          ("write_file", {"path": "evil.txt", "content": evil}),
                          ("read_file", {"path": "evil.txt"}),
                          ("finish", {"summary": "[/x] \x1b[5mdone"})]).start()
    try:
        result = cli("agent", "do it", "--repo", str(repo), env={"AI_GATEWAY_BASE_URL": model.base_url,
                                                                 "AI_GATEWAY_API_KEY": KEY}, timeout=300)
    finally:
        model.stop()
    assert result.code == 0, result.stdout + result.stderr
    assert "internal error" not in result.stderr
    assert "[/INST]␛]0;pwned␇␛[2J" in result.stdout  # the tool name the model made up, as it was
    assert "+␛]52;c;aGk=␇[/INST] arr[i] ␛[2J\\x9b6n" in result.stdout  # the file the model wrote, in the diff
    assert not RAW_CONTROL.search(result.stdout + result.stderr)


def test_eval_failures_with_control_characters_print_inert_and_junit_parses(cli, workdir):
    chosen = list(problems().values())[:3]
    hostile = ('    print("\\x1b]52;c;aGk=\\x07\\x1b[2J\\x00\\x0b\\x1b[31m[/INST] arr[i]")\n'
               '    raise ValueError("[/INST] arr[i] \\x1b[31m\\x00\\x08\\x0c\\ud800 bad")\n'
               ).replace("[/INST]", "</pre><script>alert(1)</script>[/INST]")
    lines = [json.dumps({"task_id": p.task_id, "completion": hostile if i else p.canonical_solution})
             for i, p in enumerate(chosen)]
    (workdir / "samples.jsonl").write_text("\n".join(lines) + "\n")
    junit, page = workdir / "eval.xml", workdir / "eval.html"
    result = cli("eval", "humaneval", "--samples", "samples.jsonl", "--junit", str(junit), "--html", str(page),
                 timeout=300)
    assert result.code in (0, 1), result.stderr
    assert "internal error" not in result.stderr
    assert not RAW_CONTROL.search(result.stdout + result.stderr)
    cases = ET.parse(junit).getroot().findall("testsuite/testcase")  # well-formed XML 1.0
    assert len(cases) == 3 and sum(c.find("failure") is not None for c in cases) == 2
    html = page.read_text(encoding="utf-8")
    assert "<script>" not in html and not RAW_CONTROL.search(html)  # escaped, control characters visible


def test_junit_of_failures_full_of_control_characters_is_well_formed(tmp_path):
    nasty = "".join(chr(c) for c in range(0x20)) + "\x7f\x9b\ud800\ufffe\uffff <&>\"' ]]> end"
    samples = [Sample(id=str(i), run_id="run", suite="s", route=f"r{nasty}", task_id=f"t{nasty}", outcome=outcome,
                      reason=f"reason {nasty}", usage=Usage(latency_ms=1.0),
                      verdict=None if outcome is Outcome.PENDING else Verdict(outcome=outcome, reason=f"reason {nasty}",
                                                                              proof=f"output {nasty}"))
               for i, outcome in enumerate((Outcome.FAILED, Outcome.ERROR, Outcome.PASSED, Outcome.PENDING))]
    path = write_junit(tmp_path / "out.xml", f"suite{nasty}", samples)
    root = ET.parse(path).getroot()
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.text is not None
    assert failure.text.startswith("output ␀␁") and "␛" in failure.text and failure.text.endswith("<&>\"' ]]> end")
    assert failure.get("message", "").startswith("reason ␀")
    assert root.find("testsuite/testcase/error") is not None
