"""`k2probe quickstart` on a fresh machine: every step runs against the built-in emulator, then a report."""

from __future__ import annotations

from pathlib import Path


def test_quickstart_with_nothing_configured(cli, workdir: Path, node_modules):
    result = cli("quickstart", "--json", env={"K2PROBE_NODE_MODULES": str(node_modules)})
    assert result.code == 0, result.stdout + result.stderr
    data = result.json()
    assert "built-in Kimi emulator" in result.stderr
    assert [s["id"] for s in data["steps"]] == ["doctor", "smoke", "streaming", "multimodal", "agent", "snippets"]
    assert all(s["status"] == "pass" for s in data["steps"]), data["steps"]
    assert data["steps"][2]["data"]["ttft_ms"] is not None
    report = Path(data["report"])
    html = report.read_text()
    assert "<svg" in html and "built-in emulator" in html
    assert html.count("<rect") >= 10  # one bar per call, at least
    for purpose in ("doctor: base URL", "doctor: temperature (expects a 400)", "smoke: the guide&#39;s code review",
                    "quickstart: screenshot review", "agent step 5"):
        assert purpose in html  # every call says why it was made
    assert (workdir / "home" / "known-good" / "emulator.json").exists()


def test_quickstart_without_npm_openai_warns_but_passes(cli, workdir: Path):
    result = cli("quickstart", env={"K2PROBE_NODE_MODULES": str(workdir / "nowhere")})
    assert result.code == 0, result.stdout + result.stderr
    for step in ("doctor", "smoke", "streaming", "multimodal", "agent"):
        assert f"✔ {step}" in result.stdout
    assert "! snippets" in result.stdout and "node written, not run" in result.stdout
    assert "report:" in result.stderr
