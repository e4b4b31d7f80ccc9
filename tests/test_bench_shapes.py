"""`k2probe bench` sends the requests a server meets: prompts from a JSONL dataset, lengths drawn from a seeded
distribution, a warm-up left out of the figures — each seen by the server itself (a gateway that keeps every body)."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from .hostile import is_route_check
from .untrusted_server import UntrustedGateway


@pytest.fixture
def gateway() -> Iterator[UntrustedGateway]:
    server = UntrustedGateway(lambda _key, _body: (["thinking"], ["an", " answer"])).start()
    yield server
    server.stop()


def _env(gateway: UntrustedGateway) -> dict[str, str]:
    return {"AI_GATEWAY_API_KEY": "sk-bench-0000000000", "AI_GATEWAY_BASE_URL": gateway.base_url}


def _sent(gateway: UntrustedGateway) -> list[dict]:
    return [r for r in gateway.requests if not is_route_check(r)]


def test_a_dataset_is_cycled_through_each_request_numbered_or_sent_as_written(cli, gateway, workdir: Path):
    lines = [{"prompt": "Fix the off-by-one in range(len(xs) - 1)."},
             {"messages": [{"role": "system", "content": "You review code."},
                           {"role": "user", "content": "Is `x == None` wrong?"}]},
             {"prompt": "Explain this traceback."}]
    dataset = workdir / "prompts.jsonl"
    dataset.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")  # a blank line is skipped
    done = cli("bench", "--dataset", str(dataset), "--concurrency", "2", "--requests", "9", "--workers", "2",
               "--warmup", "0", "--json", env=_env(gateway), timeout=300)
    assert done.code == 0, done.stderr[-2000:]
    sent = _sent(gateway)
    assert len(sent) == 9
    users = [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in sent]
    assert len(set(users)) == 9  # each numbered: no server answers one from its prompt cache
    asked = Counter(text.split(": ", 1)[1] for text in users)
    assert asked == {"Fix the off-by-one in range(len(xs) - 1).": 3, "Is `x == None` wrong?": 3,
                     "Explain this traceback.": 3}  # the file cycled through, each line as often
    systems = [r["messages"][0] for r in sent if r["messages"][0]["role"] == "system"]
    assert systems == [{"role": "system", "content": "You review code."}] * 3  # a shared system prompt stays shared
    settings = done.json()["settings"]
    assert settings["dataset"] == str(dataset) and settings["dataset_prompts"] == 3
    assert settings["prompt_tokens"] is None

    gateway.requests.clear()
    same = cli("bench", "--dataset", str(dataset), "--concurrency", "1", "--requests", "4", "--same-prompt",
               "--warmup", "0", "--workers", "1", "--json", env=_env(gateway), timeout=300)
    assert same.code == 0, same.stderr[-2000:]
    sent = _sent(gateway)
    assert [r["messages"][-1]["content"] for r in sent] == [
        "Fix the off-by-one in range(len(xs) - 1).", "Is `x == None` wrong?", "Explain this traceback.",
        "Fix the off-by-one in range(len(xs) - 1)."]  # as written, in order, repeating once the file is used up


def test_a_bad_dataset_is_one_line_naming_the_line_before_any_request(cli, gateway, workdir: Path):
    bad = workdir / "bad.jsonl"
    fifo = workdir / "fifo.jsonl"
    os.mkfifo(fifo)
    empty = workdir / "empty.jsonl"
    empty.write_text("\n")
    cases = [("{\"prompt\": \"ok\"}\n{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n", "line 3: \"prompt\" is not"),
             ("{\"prompt\": \"ok\"}\nnot json\n", "line 2: not JSON"),
             ("[1, 2]\n", "line 1: not a JSON object"),
             ("{\"prompt\": \"a\", \"messages\": []}\n", "line 1: give exactly one of"),
             ("{\"messages\": [{\"role\": \"system\", \"content\": \"x\"}]}\n", "line 1: \"messages\" has no \"user\""),
             ]
    for text, words in cases:
        bad.write_text(text)
        result = cli("bench", "--dataset", str(bad), "--requests", "2", env=_env(gateway))
        assert result.code == 2 and words in result.stderr, (words, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    for path, words in ((fifo, "is a FIFO, not a file"), (empty, "holds no prompt"),
                        (workdir / "missing.jsonl", "cannot read --dataset")):
        result = cli("bench", "--dataset", str(path), "--requests", "2", env=_env(gateway), timeout=60)
        assert result.code == 2 and words in result.stderr, (words, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    both = cli("bench", "--dataset", str(empty), "--prompt-tokens", "64", env=_env(gateway))
    assert both.code == 2 and "--dataset gives the prompts" in both.stderr
    assert gateway.requests == []  # refused before anything was sent


def _lengths(gateway: UntrustedGateway) -> tuple[list[int], list[int]]:
    sent = _sent(gateway)
    return ([len(r["messages"][0]["content"].split(" ")) for r in sent], [r["max_tokens"] for r in sent])


def test_lengths_are_drawn_from_the_distribution_asked_for_the_same_for_the_same_seed(cli, gateway, workdir):
    args = ("bench", "--concurrency", "4", "--requests", "200", "--workers", "2", "--warmup", "0",
            "--prompt-tokens", "400:100", "--max-tokens", "32:8", "--json")
    first = cli(*args, "--seed", "7", "--html", str(workdir / "b.html"), env=_env(gateway), timeout=300)
    assert first.code == 0, first.stderr[-2000:]
    page = (workdir / "b.html").read_text()
    assert "prompt ≈400 ± 100 (normal) tokens" in page and "max_tokens 32 ± 8 (normal)" in page
    assert "lengths drawn with seed 7" in page
    words, budgets = _lengths(gateway)
    assert len(budgets) == 200 and min(budgets) >= 1 and min(words) >= 1
    assert 28 <= statistics.mean(budgets) <= 36 and 5 <= statistics.stdev(budgets) <= 11
    # ≈ 0.75 words a token, plus the request's number
    assert 250 <= statistics.mean(words) <= 350 and 45 <= statistics.stdev(words) <= 105
    assert first.json()["settings"]["prompt_tokens"] == {"mean": 400, "stdev": 100}
    assert first.json()["settings"]["max_tokens"] == {"mean": 32, "stdev": 8} and first.json()["settings"]["seed"] == 7
    gateway.requests.clear()
    again = cli(*args, "--seed", "7", env=_env(gateway), timeout=300)
    assert again.code == 0
    assert sorted(_lengths(gateway)[1]) == sorted(budgets) and sorted(_lengths(gateway)[0]) == sorted(words)
    gateway.requests.clear()
    other = cli(*args, "--seed", "8", env=_env(gateway), timeout=300)
    assert other.code == 0 and sorted(_lengths(gateway)[1]) != sorted(budgets)
    for value in ("5:x", "0", "-3:1", "64:nan", "1:300000"):
        bad = cli("bench", "--max-tokens", value, env=_env(gateway))
        assert bad.code == 2 and "--max-tokens" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_warm_up_is_sent_first_and_left_out_of_every_figure(cli, gateway, workdir: Path):
    page = workdir / "bench.html"
    done = cli("bench", "--concurrency", "2", "--requests", "6", "--warmup", "5", "--workers", "2", "--json",
               "--html", str(page), env=_env(gateway), timeout=300)
    assert done.code == 0, done.stderr[-2000:]
    data = done.json()
    assert len(_sent(gateway)) == 5 + 6
    assert data["warmup"] == {"requests": 5, "ok": 5, "failed": {}, "concurrency": 2}
    assert data["steps"][0]["requests"] == 6 and data["steps"][0]["ttft_ms"]["n"] == 6  # measured: the step's own
    assert data["settings"]["warmup"] == 5
    html = page.read_text()
    assert "warm-up: 5 requests (5 ok) at concurrency 2, left out of every figure" in html
    shown = cli("bench", "--concurrency", "1", "--requests", "2", "--warmup", "0", env=_env(gateway), timeout=300)
    assert shown.code == 0 and "no warm-up" in shown.stderr


def test_recorded_calls_keep_the_body_each_request_sent(cli, gateway):
    done = cli("bench", "--concurrency", "2", "--requests", "16", "--workers", "2", "--warmup", "0",
               "--max-tokens", "32:8", "--seed", "3", "--record-calls", "--json", env=_env(gateway), timeout=300)
    assert done.code == 0, done.stderr[-2000:]
    shown = cli("show", done.json()["run_id"], "--json", "--limit", "100").json()
    recorded = sorted(call["request"]["max_tokens"] for call in shown["calls"])
    assert len(recorded) == 16 and recorded == sorted(_lengths(gateway)[1])  # each call, the budget it asked for
    assert len(set(recorded)) > 1
