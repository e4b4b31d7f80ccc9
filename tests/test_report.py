"""The evaluation report, as a person sees it: rendered in real headless Chromium (Debian `chromium`), offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from .conftest import route_env


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "the report test needs Debian's chromium (apt-get install chromium; .ci/run installs it)"
    return found


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def dump_dom(html: Path | str, out: Path) -> subprocess.CompletedProcess[str]:
    """Headless chromium's DOM of a page file or a served URL after load (stdout), and its console log (stderr)."""
    target = html if isinstance(html, str) else html.as_uri()
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={out / 'profile'}", "--dump-dom", target],
                          capture_output=True, text=True, timeout=120)


def _browse(html: Path | str, out: Path) -> tuple[str, str, Image.Image]:
    """The DOM after load, the browser's console log, and a screenshot, of a page file or a served URL."""
    dom = dump_dom(html, out)
    shot = out / "shot.png"
    subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={out / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1100,1800", html if isinstance(html, str) else html.as_uri()],
                   capture_output=True, text=True, timeout=120, check=True)
    return dom.stdout, dom.stderr, Image.open(shot).convert("RGB")


def test_the_eval_report_shows_the_metrics_and_every_non_pass_in_a_real_browser(cli, emulator, workdir):
    server = emulator(wrong_rate=0.4, seed=5)
    result = cli("eval", "humaneval", "--limit", "16", "--json", env=route_env(server))
    assert result.code == 0, result.stderr
    data = result.json()
    html = workdir / "report.html"
    written = cli("report", data["run_id"][:8], "--html", str(html))
    assert written.code == 0, written.stderr
    page = html.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # opens offline: nothing fetched from anywhere

    dom, console, shot = _browse(html, workdir)
    text = re.sub(r"<[^>]+>", " ", dom)
    route = data["routes"][0]
    accepted = data["metrics"][route]["accepted_rate"]
    assert f"{100 * accepted['value']:.1f}%" in text and f"(n={accepted['n']})" in text
    for label in ("accepted rate", "first success", "retries", "tool-call failure rate", "human repair time",
                  "latency avg / p95 per call", "cost per accepted task", "rollback or handoff rate", "pass@1"):
        assert label in text, label
    failed = [s for s in data["samples"] if s["outcome"] == "failed"]
    assert failed and all(s["task_id"] in text for s in failed)
    assert "AssertionError" in text  # the proving lines of a failure, not just its verdict
    assert dom.count("<svg") >= 3 and "end-to-end latency (ms)" in dom and "USD per accepted task" in dom
    assert not [line for line in console.splitlines() if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)]
    colors = shot.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 20  # text and charts drawn: not a blank page
    white = sum(count for count, rgb in colors if rgb == (255, 255, 255))
    assert white < 0.97 * shot.width * shot.height


def test_report_refuses_a_run_that_is_not_an_evaluation(cli, workdir):
    smoke = cli("smoke", "--json")
    assert smoke.code == 0, smoke.stderr
    run_id = cli("runs", "--json").json()["runs"][0]["id"]
    refused = cli("report", run_id[:8])
    assert refused.code == 2 and "is a `smoke` run" in refused.stderr


def test_the_bench_page_draws_percentiles_and_throughput_with_axes(cli, emulator, workdir):
    html = workdir / "bench.html"
    result = cli("bench", "--concurrency", "1,4", "--requests", "20", "--html", str(html), "--json",
                 env=route_env(emulator(ttft_ms=10)))
    assert result.code == 0, result.stderr
    steps = result.json()["steps"]
    dom, console, shot = _browse(html, workdir)
    text = re.sub(r"<[^>]+>", " ", dom)
    for step in steps:
        assert f"concurrency {step['concurrency']}" in text and f"{step['rps']:.1f}" in text
    for label in ("TTFT percentiles against concurrency", "milliseconds", "requests per second",
                  "concurrency (requests in flight)"):
        assert label in dom, label
    assert dom.count("<polyline") >= 3
    # the page says what was measured and how it was judged, and ITL/TPOT beside TTFT
    assert "streamed, prompt ≈256 tokens (each prompt numbered" in text and "max_tokens 64, 20 requests per step" in text
    assert "no SLO given: goodput counts every answered request" in text and "measured 20" in text
    assert "ITL p50 / p99 (ms)" in text and "TPOT p50 (ms)" in text
    assert not [line for line in console.splitlines() if "CONSOLE" in line and "ERROR" in line]
    assert len(shot.getcolors(maxcolors=1 << 20) or []) > 20


def test_the_bench_page_says_failures_by_kind_in_words_and_draws_them(cli, emulator, workdir):
    html = workdir / "bench.html"
    result = cli("bench", "--concurrency", "2", "--requests", "12", "--html", str(html), "--slo", "ttft_ms=500",
                 "--json", env=route_env(emulator(faults={"cut": 0.5})))
    assert result.code == 0, result.stderr
    failed = result.json()["steps"][0]["failed"]
    assert failed.get("stream_cut"), failed
    dom, _, _ = _browse(html, workdir)
    text = re.sub(r"<[^>]+>", " ", dom)
    assert f"stream_cut {failed['stream_cut']}" in text and "{'" not in text  # words, not a Python dict
    assert "failed requests by kind, per step" in dom and "SLO: ttft ≤ 500 ms" in text
