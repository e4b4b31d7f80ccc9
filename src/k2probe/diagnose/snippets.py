"""Replay the known-good request as runnable cURL, Python or Node.js code that reads the key from the environment.
Every recorded value enters the code as a literal of its language (untrusted.shell_word, python_str, js_str) or a
one-line comment (untrusted.comment): a model id or URL holding quotes, `$(…)` or a line break stays data."""

from __future__ import annotations

import functools
import json
import os
import pprint
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from k2probe import __version__
from k2probe.core import untrusted
from k2probe.core.envnames import BASE_URL_ENV, KEY_ENVS, MODEL_ENV
from k2probe.core.errors import UsageError

LANGS = {"curl": "curl.sh.j2", "python": "python.py.j2", "node": "node.mjs.j2"}
EXTENSIONS = {"curl": "sh", "python": "py", "node": "mjs"}
EMULATOR_URL = "http://127.0.0.1:8765/v1"  # where `k2probe emulator` serves by default
SDK_KWARGS = ("max_tokens", "max_completion_tokens", "stop", "stream", "stream_options", "tools", "tool_choice",
              "response_format", "logprobs", "top_logprobs", "prompt_cache_key", "temperature", "top_p", "n",
              "presence_penalty", "frequency_penalty")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LITERAL = {"curl": untrusted.shell_word, "python": untrusted.python_str, "node": untrusted.js_str}


@functools.lru_cache(maxsize=1)
def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("k2probe", "templates"), undefined=StrictUndefined,
                       keep_trailing_newline=True, autoescape=False)


def _py(value: Any) -> str:
    return pprint.pformat(value, indent=1, width=110, sort_dicts=False)


def render(record: dict[str, Any], lang: str) -> str:
    """The snippet for one language, from a known-good record."""
    if lang not in LANGS:
        raise UsageError(f"unknown language {lang!r}", fix=f"use one of: {', '.join(LANGS)}")
    body = dict(record["request"])
    key_env = str(record.get("api_key_env") or "AI_GATEWAY_API_KEY")
    if not ENV_NAME.fullmatch(key_env):
        raise UsageError(f"the recorded key variable {untrusted.comment(key_env)!r} is not an environment variable "
                         "name", fix="set api_key_env in k2probe.toml to a name like AI_GATEWAY_API_KEY, then run "
                         "`k2probe smoke` again")
    rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
    # The guide's variables go together: a key read from AI_GATEWAY_API_KEY goes where AI_GATEWAY_BASE_URL points. A
    # route with a key variable of its own gets the URL it was recorded against, so its key reaches no other host.
    paired = key_env in KEY_ENVS
    literal = LITERAL[lang]
    base_url = str(record["base_url"] or "")
    context = {
        "route": untrusted.comment(str(record["route"])), "model": untrusted.comment(str(record["model"])),
        "version": __version__, "key_env": key_env, "base_url": untrusted.comment(base_url),
        "emulated": bool(record.get("emulated")),
        "model_literal": literal(str(record["model"])),
        "default_base_url": literal(EMULATOR_URL if record.get("emulated") else base_url),
        "url_env": BASE_URL_ENV if paired else None, "model_env": MODEL_ENV if paired else None,
        "model_json": untrusted.shell_word(json.dumps(str(record["model"]), ensure_ascii=False)),
        "body_json": untrusted.json_document(json.dumps(body, indent=2, ensure_ascii=False)),
        "body_json_rest": untrusted.json_document(
            json.dumps({k: v for k, v in body.items() if k != "model"}, indent=2, ensure_ascii=False))[1:].lstrip("\n"),
        "body_js": untrusted.json_document(json.dumps(body, indent=2, ensure_ascii=False)),
        "messages_py": _py(body["messages"]).replace("\n", "\n    "),
        "kwargs_py": [(k, _py(v)) for k, v in rest.items() if k in SDK_KWARGS],
        "extra_py": _py({k: v for k, v in rest.items() if k not in SDK_KWARGS}) if any(
            k not in SDK_KWARGS for k in rest) else "",
    }
    return str(_templates().get_template(LANGS[lang]).render(**context))


def node_runnable(folder: Path) -> str | None:
    """Why the Node snippet cannot run from `folder` (None when it can): node missing or npm `openai` not found."""
    if shutil.which("node") is None:
        return "node is not installed"
    modules = os.environ.get("K2PROBE_NODE_MODULES")
    link = folder / "node_modules"
    if modules and Path(modules).is_dir() and not link.exists():
        link.symlink_to(Path(modules).resolve(), target_is_directory=True)
    probe = subprocess.run(["node", "--input-type=module", "-e", "await import('openai')"], cwd=folder,
                           capture_output=True, text=True, timeout=60)
    return None if probe.returncode == 0 else "npm package openai not found (npm install openai)"


def run_snippet(path: Path, lang: str, env: dict[str, str], timeout_s: float = 120.0) -> tuple[int, str, str]:
    """Run a written snippet; returns (exit code, stdout, stderr)."""
    path = path.resolve()
    command = {"curl": ["sh", str(path)], "python": [sys.executable, str(path)], "node": ["node", str(path)]}[lang]
    done = subprocess.run(command, cwd=path.parent, env=env, capture_output=True, text=True, timeout=timeout_s)
    return done.returncode, done.stdout, done.stderr
