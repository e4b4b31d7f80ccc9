"""Programs from venvs of their own, never k2probe's dependencies: the LiteLLM proxy, and the client frameworks teams
use (LangChain's ChatOpenAI, …). .ci/run creates each venv and names its program in an environment variable; without
it, a cached venv under /tmp is made on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def venv_program(variable: str, cache: Path, packages: tuple[str, ...], program: str) -> str:
    """The program `variable` names when it exists, else `program` from the venv `cache` holding `packages`."""
    given = os.environ.get(variable)
    if given and Path(given).is_file():
        return given
    if not (cache / ".complete").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(cache)], check=True)
        subprocess.run([str(cache / "bin" / "pip"), "install", "-q", *packages], check=True, timeout=900)
        (cache / ".complete").write_text("ok\n")
    return str(cache / "bin" / program)


def client_python() -> str:
    """The Python of the client-framework venv ($K2PROBE_CLIENTS)."""
    return venv_program("K2PROBE_CLIENTS", Path("/tmp/k2probe-clients-venv"),
                        ("langchain-openai", "pydantic-ai-slim[openai]"), "python")


def litellm_program() -> str:
    """The LiteLLM proxy's program ($K2PROBE_LITELLM)."""
    return venv_program("K2PROBE_LITELLM", Path("/tmp/k2probe-litellm-venv"), ("litellm[proxy]",), "litellm")
