"""Every `--json` document validates against the schema `k2probe schema NAME` publishes: each command run for real
against the emulator, its stdout checked with jsonschema (closed objects: a key the schema does not know fails)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from k2probe.report.documents import documents, json_schema

from .conftest import route_env

needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap"), reason="the sandbox needs bubblewrap")


def _errors(name: str, document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(json_schema(name))
    return [f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(document)]


def test_the_schema_command_lists_prints_and_refuses(cli, workdir: Path):
    listed = cli("schema")
    assert listed.code == 0 and listed.stdout.split() == sorted(documents())
    printed = cli("schema", "eval")
    assert printed.code == 0, printed.stderr
    schema = json.loads(printed.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False and "metrics" in schema["required"]
    unknown = cli("schema", "nope")
    assert unknown.code == 2 and unknown.stdout == ""
    assert len(unknown.stderr.strip().splitlines()) == 1 and "one of: agent" in unknown.stderr


def test_a_document_with_a_key_the_schema_does_not_know_fails():
    document = {"routes": [{"name": "a", "base_url": None, "model": "m", "profile": None, "api_key": None,
                            "api_key_env": None, "headers": {}, "params": {}, "emulated": True,
                            "personality": None}]}
    assert _errors("routes", document) == []
    document["routes"][0]["api_key_plain"] = "sk-oops"
    assert _errors("routes", document)
    del document["routes"][0]["model"]
    assert len(_errors("routes", document)) == 2


@needs_bwrap
def test_every_json_document_validates_against_its_schema(cli, emulator, workdir: Path, node_modules):
    server = emulator()
    env = route_env(server)
    produced: dict[str, Any] = {}

    def run(name: str, *args: str, codes: tuple[int, ...] = (0,), extra: dict[str, str] | None = None) -> Any:
        done = cli(*args, "--json", env={**env, **(extra or {})}, timeout=300)
        assert done.code in codes, (name, done.code, done.stderr[-2000:])
        produced[name] = done.json()
        return produced[name]

    run("routes", "routes")
    run("doctor", "doctor")
    run("audit", "audit", codes=(0, 1))
    run("smoke", "smoke")
    run("chat", "chat", "say hi", "--stream")
    run("bench", "bench", "--concurrency", "1,2", "--requests", "4")
    run("agent", "agent", "--task", "median")
    run("agent-tasks", "agent", "--list-tasks")
    run("suite-check", "suite", "check", "basic")
    run("proxy", "proxy", "--listen", "127.0.0.1:0", "--duration", "0.5")
    run("quickstart", "quickstart", extra={"K2PROBE_NODE_MODULES": str(node_modules)})
    (workdir / "k2probe.toml").write_text(
        f"[routes.one]\nbase_url = '{server.base_url}'\napi_key_env = 'ONE_KEY'\n"
        f"[routes.two]\nbase_url = '{server.base_url}'\napi_key_env = 'TWO_KEY'\n")
    env.update(ONE_KEY="sk-k2probe-emulator", TWO_KEY="sk-k2probe-emulator")
    evaluated = run("eval", "eval", "humaneval", "--limit", "3", "--route", "one", "--route", "two",
                    "--fail-under", "accepted_rate=0.1")
    run_id = evaluated["run_id"][:8]
    run("compare", "compare", run_id)
    run("runs", "runs")
    run("show", "show", run_id)
    run("review", "review", run_id, "--accept", "--repair-minutes", "3")
    assert set(produced) == set(documents()), "a command with --json is not exercised here"
    errors = [line for name, document in produced.items() for line in _errors(name, document)]
    assert errors == [], "\n".join(errors)
