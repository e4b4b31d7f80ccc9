"""The Python of a venv of its own holding the client frameworks teams use (LangChain's ChatOpenAI, …), never
k2probe's own dependencies. .ci/run creates it and sets K2PROBE_CLIENTS; without it, a cached venv under /tmp is made
on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACKAGES = ("langchain-openai",)
CACHE = Path("/tmp/k2probe-clients-venv")


def client_python() -> str:
    given = os.environ.get("K2PROBE_CLIENTS")
    if given and Path(given).is_file():
        return given
    python = CACHE / "bin" / "python"
    if not (CACHE / ".complete").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(CACHE)], check=True)
        subprocess.run([str(CACHE / "bin" / "pip"), "install", "-q", *PACKAGES], check=True, timeout=900)
        (CACHE / ".complete").write_text("ok\n")
    return str(python)
