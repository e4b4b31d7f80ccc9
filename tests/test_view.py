"""`k2probe view` as a person uses it: the real command serving a store made by real `eval` runs, read over loopback
HTTP (with the browser's cookies) and rendered in headless Debian chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import route_env
from .test_report import _browse

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="the sandbox needs bubblewrap")
CANARY = "sk-canary-view-5f1d2c3b4a"
HOSTILE = "    return 1  # <script>document.title='pwned'</script><img src=x onerror=alert(1)>\n"


class Viewer:
    """`k2probe view --port 0` as a process of its own; `url` is what it printed."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "k2probe", "view", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})})
        assert self.process.stderr is not None
        self.printed: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.printed.append(line)
            found = re.search(r"on (http://\S+/)", line)
            if found:
                self.url = found.group(1)
                if "--allow-remote" in args:
                    self.printed.append(self.process.stderr.readline())
                return
        raise AssertionError(f"the viewer did not start: {''.join(self.printed)}")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return "".join(self.printed) + err


@pytest.fixture
def viewer(workdir: Path) -> Iterator[type[Viewer]]:
    started: list[Viewer] = []

    class Started(Viewer):
        def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
            super().__init__(*args, env=env)
            started.append(self)

    yield Started
    for v in started:
        v.stop()


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&amp;", "&")


def test_runs_run_sample_compare_and_a_review_that_moves_the_metric(cli, emulator, workdir, viewer):
    server = emulator(wrong_rate=0.5, seed=3, api_key=CANARY)
    env = route_env(server, key=CANARY)
    first = cli("eval", "humaneval", "--limit", "6", "--json", env=env, timeout=300)
    assert first.code == 0, first.stderr
    data = first.json()
    run_id, route = data["run_id"], data["routes"][0]
    second = cli("eval", "humaneval", "--limit", "6", "--json", env=route_env(emulator(api_key=CANARY), key=CANARY),
                 timeout=300)
    assert second.code == 0, second.stderr
    view = viewer()
    pages: list[str] = []
    with httpx.Client(base_url=view.url, timeout=30, follow_redirects=False) as http:
        runs = http.get("/")
        assert runs.status_code == 200 and "k2probe_session" in runs.headers["set-cookie"]
        pages.append(runs.text)
        run_page_text = http.get(f"/runs/{run_id}").text
        assert '<table class="list" id="routes">' in run_page_text and server.base_url in run_page_text
        assert run_id in runs.text and second.json()["run_id"] in runs.text
        listed = _text(runs.text)
        samples = data["samples"]
        passed = sum(s["outcome"] == "passed" for s in samples)
        assert f"{passed} / {len(samples) - passed} / 0 of {len(samples)}" in listed

        filtered = http.get("/", params={"command": "agent"})  # filters live in the URL
        assert run_id not in filtered.text and "no run matches" in filtered.text

        page = http.get(f"/runs/{run_id}")
        pages.append(page.text)
        accepted = data["metrics"][route]["accepted_rate"]
        shown = _text(page.text)
        assert f"{100 * accepted['value']:.1f}%" in shown and f"(n={accepted['n']})" in shown  # the --json figure
        assert http.get(f"/runs/{run_id}/metrics.json").json()["metrics"][route]["accepted_rate"] == accepted

        failed_page = http.get(f"/runs/{run_id}", params={"outcome": "failed", "size": 25})
        failed = [s for s in samples if s["outcome"] == "failed"]
        assert failed and failed_page.text.count('class="outcome-failed"') == len(failed)
        assert 'class="outcome-passed"' not in failed_page.text
        paged = http.get(f"/runs/{run_id}", params={"size": 25, "sort": "task", "order": "desc"})
        tasks = re.findall(r">(HumanEval/\d+)</a>", paged.text)
        assert len(tasks) == 6 and tasks == sorted(tasks, reverse=True)

        target = failed[0]
        link = re.search(rf'href="(/runs/{run_id}/samples/[0-9a-f-]+)">{re.escape(target["task_id"])}<',
                         failed_page.text)
        assert link, failed_page.text[-2000:]
        sample = http.get(link.group(1))
        pages.append(sample.text)
        assert "Transcript" in sample.text and "Complete the following Python function" in sample.text
        assert "failed" in _text(sample.text) and "TTFT" in sample.text
        # the verdict drawn by the report's own macro: the failing assertion, the model's line marked in its code
        assert "failing assertion (test line" in sample.text and '<span class="marked">' in sample.text
        replay = http.get(f"{link.group(1)}/calls/1/replay/python")
        assert replay.status_code == 200 and "AI_GATEWAY_API_KEY" in replay.text and CANARY not in replay.text
        (workdir / "replay.py").write_text(replay.text)
        rerun = subprocess.run([sys.executable, str(workdir / "replay.py")], capture_output=True, text=True,
                               timeout=120, env={**os.environ, **env})
        assert rerun.returncode == 0, rerun.stderr[-1000:]  # the recorded request, replayed against its route
        assert "Complete the following Python function" in replay.text
        token = re.search(r'name="form_token" value="([0-9a-f]+)"', sample.text)
        sample_id = link.group(1).rsplit("/", 1)[1]
        assert token

        # a person accepts the failed sample: the table's accepted rate moves as `k2probe review` would move it
        own = {"origin": view.url.rstrip("/")}
        forged = http.post(f"/runs/{run_id}/review", data={"form_token": "0" * 64, "sample": sample_id,
                                                           "verdict": "accept"}, headers=own)
        assert forged.status_code == 403
        cross = http.post(f"/runs/{run_id}/review", headers={"origin": "http://evil.example"},
                          data={"form_token": token.group(1), "sample": sample_id, "verdict": "accept"})
        assert cross.status_code == 403
        rebound = httpx.get(view.url, headers={"host": "evil.example:80"})
        assert rebound.status_code == 421
        unnamed = http.post(f"/runs/{run_id}/review", data={"form_token": token.group(1), "sample": sample_id,
                                                             "verdict": "accept"})
        assert unnamed.status_code == 403  # a post that names no origin at all is not taken
        infinite = http.post(f"/runs/{run_id}/review", headers=own, data={
            "form_token": token.group(1), "sample": sample_id, "verdict": "accept", "repair_minutes": "1e999"})
        assert infinite.status_code == 400 and "repair minutes" in infinite.text
        assert http.get("/", params={"sort": "bogus"}).status_code == 400
        assert http.get(f"/runs/{run_id}", params={"sort": "bogus"}).status_code == 400
        # another app on localhost may leave an odd cookie (cookies ignore ports): the session is still found
        odd = {**dict(http.cookies), "jupyter-prefs": '{"theme":1}'}
        kept = httpx.post(f"{view.url}runs/{run_id}/review", headers={**own, "cookie": "; ".join(
            f"{k}={v}" for k, v in odd.items())}, data={"form_token": token.group(1), "sample": sample_id,
                                                      "verdict": "reject"})
        assert kept.status_code == 303, kept.text
        assert http.post(f"/runs/{run_id}/review", data={"form_token": "x"}, headers={
            "sec-fetch-site": "cross-site"}).status_code == 403
        done = http.post(f"/runs/{run_id}/review", data={"form_token": token.group(1), "sample": sample_id,
                                                         "verdict": "accept", "repair_minutes": "4"}, headers=own)
        assert done.status_code == 303, done.text
        after = http.get(f"/runs/{run_id}/metrics.json").json()["metrics"][route]["accepted_rate"]
        assert after["value"] == pytest.approx(accepted["value"] + 1 / accepted["n"]) and after["reviewed"] == 1
        shown_json = cli("show", run_id[:8], "--json")
        assert shown_json.code == 0 and len(shown_json.json()["reviews"]) == 2  # what `k2probe review` writes
        assert "accepted · 4.0 min repair" in _text(http.get(link.group(1)).text)

        compared = http.get("/compare", params=[("run", run_id), ("run", second.json()["run_id"])])
        pages.append(compared.text)
        assert compared.status_code == 200 and "exact McNemar" in compared.text
        # the second run passed everything: each failure is a fix but the one a person accepted (reviews count)
        assert f"0 regression(s), {len(failed) - 1} fix(es), {len(samples) - len(failed) + 1} unchanged" in compared.text
        assert compared.text.count('class="change-fix"') == len(failed) - 1  # changed only, by default
        assert http.get("/compare", params={"run": run_id}).status_code == 400  # one route: nothing to compare
        pages.append(http.get(f"/runs/{run_id}/samples.csv").text)
        junit = http.get(f"/runs/{run_id}/junit.xml").text
        pages.append(junit)
        assert junit.startswith("<?xml") and junit.count("<failure") == len(failed) and "<testcase" in junit
    for text in pages:
        assert CANARY not in text and CANARY[-12:] not in text


def test_model_output_is_shown_never_run_in_a_real_browser(cli, workdir, viewer):
    from k2probe.tasks.humaneval import problems

    task = "HumanEval/0"
    assert problems()[task]
    (workdir / "samples.jsonl").write_text(json.dumps({"task_id": task, "completion": HOSTILE}) + "\n")
    result = cli("eval", "humaneval", "--samples", "samples.jsonl", "--json", timeout=300)
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    view = viewer()
    with httpx.Client(base_url=view.url, timeout=30) as http:
        page = http.get(f"/runs/{run_id}").text
        link = re.search(rf'href="(/runs/{run_id}/samples/[0-9a-f-]+)"', page)
        assert link
        raw = http.get(link.group(1)).text
    assert "&lt;script&gt;document.title=" in raw and "<script>document" not in raw
    (workdir / "b").mkdir()
    dom, console, shot = _browse(view.url.rstrip("/") + link.group(1), workdir / "b")
    assert "<title>HumanEval/0 on samples — k2probe view</title>" in dom  # the answer's script did not retitle it
    assert "document.title='pwned'" in _text(dom) and "onerror=alert(1)" in _text(dom)  # shown as text
    assert not [line for line in console.splitlines() if "Uncaught" in line]
    assert len(shot.getcolors(maxcolors=1 << 20) or []) > 10


def test_beyond_loopback_only_when_asked_and_then_behind_a_token(workdir, viewer):
    refused = subprocess.run([sys.executable, "-m", "k2probe", "view", "--host", "0.0.0.0", "--port", "0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr and "Traceback" not in refused.stderr
    view = viewer("--host", "0.0.0.0", "--allow-remote")
    token = re.search(r"shown this once and kept nowhere: (\S+)", "".join(view.printed))
    assert token
    port = view.url.rsplit(":", 1)[1].rstrip("/")
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(base + "/").status_code == 401
    assert httpx.post(base + "/_login", data={"token": "wrong"}).status_code == 401
    with httpx.Client(base_url=base) as http:
        login = http.post("/_login", data={"token": token.group(1)})
        assert login.status_code == 303
        assert http.get("/").status_code == 200  # the cookie now opens every page
    home = workdir / "home"
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert token.group(1).encode() not in stored


def test_a_busy_port_is_one_line(workdir, viewer):
    view = viewer()
    port = view.url.rsplit(":", 1)[1].rstrip("/")
    busy = subprocess.run([sys.executable, "-m", "k2probe", "view", "--port", port], capture_output=True, text=True,
                          timeout=60)
    assert busy.returncode == 2 and "the port is in use" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1


def _browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the viewer tests need Debian's chromium"
    manager = sync_playwright().start()
    return manager, manager.chromium.launch(executable_path=chromium, args=["--no-sandbox"])


def test_a_person_walks_runs_run_sample_and_reviews_in_a_real_browser(cli, emulator, workdir, viewer):
    server = emulator(wrong_rate=0.5, seed=3)  # wrong answers are chosen per seed, task and asking: fixed here
    ran = cli("eval", "humaneval", "--limit", "6", "--json", env=route_env(server), timeout=300)
    assert ran.code == 0, ran.stderr
    data = ran.json()
    route = data["routes"][0]
    failed = next(s for s in data["samples"] if s["outcome"] == "failed")
    view = viewer()
    manager, browser = _browser()
    try:
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(view.url)
        rate = data["metrics"][route]["accepted_rate"]
        listed = page.locator("td.accepted").filter(has_text="%")
        listed.wait_for(timeout=30_000)  # filled in from the run's metrics: the --json figure, with its n
        assert listed.inner_text().startswith(f"{100 * rate['value']:.1f}% [") and f"(n={rate['n']})" in \
            listed.inner_text()
        page.click(f"a[href='/runs/{data['run_id']}']")
        assert f"{100 * rate['value']:.1f}%" in page.inner_text("table.metrics")
        page.select_option("select[name=outcome]", "failed")
        page.click("form.filters button")
        assert "outcome=failed" in page.url  # the filter is in the URL
        page.click(f"text={failed['task_id']}")
        assert "Transcript" in page.inner_text("main") and page.is_visible("section.verdict")
        page.check("input[value=accept]")
        page.fill("input[name=repair_minutes]", "3")
        page.click("form.review-form button")
        assert "accepted · 3.0 min repair" in page.inner_text("main")
        page.click("text=← run")
        moved = (rate["value"] * rate["n"] + 1) / rate["n"]
        assert f"{100 * moved:.1f}%" in page.inner_text("table.metrics")
        assert page.screenshot() and not errors, errors
    finally:
        browser.close()
        manager.stop()


def test_a_running_evaluation_progresses_on_its_page_without_a_reload(emulator, workdir, viewer):
    view = viewer()  # serving before the run starts: the run is seen while it runs however slow this machine is
    server = emulator(ttft_ms=800)  # 10 samples one at a time: at least 8 s of running
    env = {**os.environ, **route_env(server)}
    run = subprocess.Popen([sys.executable, "-m", "k2probe", "eval", "humaneval", "--limit", "10", "--concurrency",
                            "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    manager, browser = _browser()
    try:
        run_id = None
        deadline = time.monotonic() + 120
        while run_id is None and time.monotonic() < deadline and run.poll() is None:
            found = re.search(r'href="/runs/([0-9a-f-]{36})"', httpx.get(view.url, params={"status": "running"}).text)
            run_id = found.group(1) if found else None
            time.sleep(0.1)
        assert run_id, "the running evaluation was not listed"
        page = browser.new_page()
        page.goto(f"{view.url}runs/{run_id}")
        page.evaluate("window.sameDocument = true")
        page.locator("#run-status", has_text="finished").wait_for(timeout=180_000)
        assert page.evaluate("window.sameDocument === true")  # it followed the run without a reload
        assert page.locator("#samples tbody tr.outcome-passed").count() == 10
    finally:
        browser.close()
        manager.stop()
        run.wait(timeout=180)


def test_a_huge_answer_is_shown_cut_with_its_length_and_served_whole_as_text(cli, workdir, viewer):
    body = "    return 1\n" + "# padding\n" * 300_000  # 3 MB of answer
    (workdir / "samples.jsonl").write_text(json.dumps({"task_id": "HumanEval/0", "completion": body}) + "\n")
    result = cli("eval", "humaneval", "--samples", "samples.jsonl", "--json", timeout=300)
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    view = viewer()
    with httpx.Client(base_url=view.url, timeout=60) as http:
        link = re.search(rf'href="(/runs/{run_id}/samples/[0-9a-f-]+)"', http.get(f"/runs/{run_id}").text)
        assert link
        page = http.get(link.group(1)).text
        assert f"shown: the first 20000 characters of {len(body.encode())} bytes" in page and len(page) < 200_000
        whole = http.get(link.group(1) + "/answer.txt")
        assert whole.status_code == 200 and whole.text == body


def test_an_agent_run_shows_its_attempt_as_the_report_does_and_takes_a_review(cli, workdir, viewer):
    ran = cli("agent", "--task", "slugify", "--json", timeout=300)
    assert ran.code == 0, ran.stderr
    run_id = ran.json()["run_id"]  # the run to review it in
    view = viewer()
    with httpx.Client(base_url=view.url, timeout=60) as http:
        page = http.get(f"/runs/{run_id}").text
        assert '<details class="reasoning">' in page and re.search(r"<b>(write_file|apply_patch|edit_file)</b>", page)
        assert "hidden tests passed" in page and ran.json()["attempt_id"] in page
        attempt = re.search(r'name="attempt" value="([0-9a-f-]+)"', page)
        token = re.search(r'name="form_token" value="([0-9a-f]+)"', page)
        assert attempt and token
        done = http.post(f"/runs/{run_id}/review", data={"form_token": token.group(1), "attempt": attempt.group(1),
                                                         "verdict": "reject", "handoff": "1"},
                         headers={"origin": view.url.rstrip("/")})
        assert done.status_code == 303
    shown = cli("show", run_id[:8], "--json").json()
    [review] = shown["reviews"]
    assert review["attempt_id"] == attempt.group(1) and review["accepted"] is False and review["handoff"] is True


def test_every_kind_of_run_has_a_page_and_the_reports_own_page_is_served(cli, workdir, viewer):
    assert cli("doctor").code == 0
    bench = cli("bench", "--concurrency", "2", "--requests", "8", "--json", timeout=300)
    assert bench.code == 0, bench.stderr
    runs = {r["command"]: r["id"] for r in cli("runs", "--json").json()["runs"]}
    view = viewer()
    with httpx.Client(base_url=view.url, timeout=60) as http:
        doctor = http.get(f"/runs/{runs['doctor']}").text
        assert '<table class="list" id="calls">' in doctor and "diagnosis" in doctor
        assert re.search(r"<td>1</td><td>[^<]+</td><td>\d{3}", doctor)  # its calls, each with its status
        page = http.get(f"/runs/{runs['bench']}/page")
        assert page.status_code == 200 and "k2probe bench" in page.text and "<svg" in page.text
        written = cli("report", runs["bench"][:8], "--html", str(workdir / "bench.html"))
        assert written.code == 0
        assert (workdir / "bench.html").read_text() == page.text  # one renderer for the file and the viewer
        assert http.get(f"/runs/{runs['doctor']}/page").status_code == 404  # a doctor run has no report page
