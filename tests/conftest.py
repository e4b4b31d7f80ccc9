"""Shared fixtures: a clean environment per test, emulators on loopback, and the CLI run as a real process (`cli`,
forked from a zygote that imported k2probe once; `cli_exec`, started afresh) or, where only its answer to bad input is
tested, through its own entry point in this process (`cli_in_process`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from k2probe.emulator import EmulatorServer, EmulatorSettings

from .cli_zygote import Zygote

EMULATOR_KEY = "sk-k2probe-emulator"
SCRUB = ("AI_GATEWAY_API_KEY", "AI_GATEWAY_BASE_URL", "KIMI_CODING_MODEL", "MOONSHOT_API_KEY", "OPENAI_API_KEY",
         "OPENAI_BASE_URL", "K2PROBE_DB_URL", "K2PROBE_ROUTE", "K2PROBE_CONFIG", "K2PROBE_JSON", "K2PROBE_STRICT")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with K2PROBE_HOME inside it and no provider variables set."""
    for name in SCRUB:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("K2PROBE_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with given settings; all are stopped at the end of the test."""
    started: list[EmulatorServer] = []

    def start(**settings: Any) -> EmulatorServer:
        server = EmulatorServer(EmulatorSettings(**settings)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def _cli_env(env: dict[str, str] | None) -> dict[str, str]:
    """The test's environment less the provider variables, plus `env`, at a fixed terminal width."""
    full_env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    return full_env


@pytest.fixture(scope="session")
def cli_zygote() -> Iterator[Zygote]:
    """One process that has imported k2probe and forks a real `python -m k2probe` process per `cli` call."""
    zygote = Zygote()
    yield zygote
    zygote.close()


@pytest.fixture
def cli(workdir: Path, cli_zygote: Zygote) -> Callable[..., CliResult]:
    """Run `python -m k2probe ARGS` as a process of its own in the work directory with the test's environment plus
    `env` — forked from `cli_zygote` (no interpreter start and imports per call), started afresh when it must be."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        return CliResult(*cli_zygote.run(list(args), _cli_env(env), workdir, timeout))

    return run


@pytest.fixture
def cli_exec(workdir: Path) -> Callable[..., CliResult]:
    """`cli` always started the ordinary way, `python -m k2probe` exec'd afresh: for what an interpreter's own start
    and imports decide (the installed entry point, sys.path, start-up time)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        done = subprocess.run([sys.executable, "-m", "k2probe", *args], cwd=workdir, env=_cli_env(env),
                              capture_output=True, text=True, timeout=timeout)
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def cli_in_process(workdir: Path) -> Callable[..., CliResult]:
    """`cli`, but k2probe's own entry point (`k2probe.cli.main`, what `python -m k2probe` calls) run in this process:
    no interpreter start and imports per call (~1 s each on a loaded machine). Everything a run could change is put
    back afterwards: the environment, the working directory, sys.stdout/stderr/argv and the secrets the redactor has
    learnt. It runs in a worker thread so a hang fails the test after `timeout` instead of hanging the suite. Keep
    `cli` for what only a real process shows: signals, exit-time output, stdin, a blocking open, the C stack."""
    import io
    import threading

    from k2probe.cli import main
    from k2probe.core import redact

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        saved_streams = (sys.stdout, sys.stderr, sys.argv)
        saved_secrets = (set(redact._KNOWN), list(redact._ordered))
        stdout, stderr = io.StringIO(), io.StringIO()
        outcome: list[BaseException | None] = []

        def entry() -> None:
            try:
                main()
                outcome.append(None)
            except BaseException as exc:  # SystemExit is the exit code; anything else escaped main()
                outcome.append(exc)

        try:
            for name in SCRUB:
                os.environ.pop(name, None)
            os.environ.update(env or {})
            os.environ["COLUMNS"] = "200"
            os.chdir(workdir)
            sys.stdout, sys.stderr, sys.argv = stdout, stderr, ["k2probe", *args]
            worker = threading.Thread(target=entry, name="k2probe-in-process", daemon=True)
            worker.start()
            worker.join(timeout)
            out_text, err_text = stdout.getvalue(), stderr.getvalue()
        finally:
            sys.stdout, sys.stderr, sys.argv = saved_streams
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            redact._KNOWN.clear()
            redact._KNOWN.update(saved_secrets[0])
            redact._ordered[:] = saved_secrets[1]
        if worker.is_alive():
            pytest.fail(f"k2probe {' '.join(args)[:200]} still running after {timeout} s\n{err_text[-2000:]}")
        exc = outcome[0]
        if exc is None:
            code = 0
        elif isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                err_text += exc.code + "\n"
        else:  # main() lets nothing else out: a real process would print this traceback
            import traceback

            err_text += "".join(traceback.format_exception(exc))
            code = 1
        return CliResult(code, out_text, err_text)

    return run


def route_env(server: EmulatorServer, key: str = EMULATOR_KEY, base_url: str | None = None,
              model: str | None = None) -> dict[str, str]:
    """The guide's three environment variables pointed at an emulator."""
    env = {"AI_GATEWAY_API_KEY": key, "AI_GATEWAY_BASE_URL": base_url or server.base_url}
    if model:
        env["KIMI_CODING_MODEL"] = model
    return env


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory) -> Path:
    """A node_modules with the npm `openai` package: K2PROBE_NODE_MODULES (CI installs it), else npm install."""
    given = os.environ.get("K2PROBE_NODE_MODULES")
    if given and (Path(given) / "openai").is_dir():
        return Path(given)
    folder = tmp_path_factory.mktemp("npm")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "openai"], cwd=folder, check=True,
                   capture_output=True, timeout=300)
    return folder / "node_modules"


@pytest.fixture
def scratch() -> Iterator[Callable[..., Path]]:
    """Make folders directly under /tmp (where the sandbox and a user's venv would be, not under pytest's own
    tmp_path), all removed when the test ends — a test leaves nothing behind on the machine."""
    import shutil
    import tempfile

    made: list[Path] = []

    def make(prefix: str, where: str = "/tmp") -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=prefix, dir=where)))
        return made[-1]

    yield make
    for folder in made:
        subprocess.run(["chmod", "-R", "u+rwX", str(folder)], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def venv_seeing_our_packages(folder: Path) -> Path:
    """A new venv in `folder` (no pip) whose interpreter sees the packages this test run has — k2probe, pytest —
    through a .pth file, whether this run is in a venv itself or not. Returns its python."""
    import site

    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    inner = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                           capture_output=True, text=True).stdout.strip()
    ours = [p for p in [*site.getsitepackages(), *sys.path] if p and Path(p).is_dir()]
    (Path(inner) / "k2probe-test.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    return python


def trusted_pem(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A server's key and certificate (localhost, 127.0.0.1) in one PEM file, from a throwaway CA that clients in
    this process trust through SSL_CERT_FILE, as a company's own CA would be."""
    import trustme

    ca = trustme.CA()
    pem, ca_file = folder / "server.pem", folder / "ca.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return pem


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], seconds: float, log: Path | None = None) -> None:
    """Return once something accepts connections on the loopback port; fail if the process dies or time runs out."""
    import socket
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert process.poll() is None, log.read_text()[-2000:] if log else "the server process exited"
            time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} within {seconds:.0f} s")
