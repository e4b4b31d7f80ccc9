"""The command line: parse options (each also an environment variable), call one activity, print its result.
Commands live in the *_commands modules by subject; each imports what it uses when it runs."""

from __future__ import annotations

import contextlib
import io
import os
import sys

import typer

from k2probe import __version__
from k2probe.cli import (  # noqa: F401 - they register
    diagnose_commands,
    eval_commands,
    proxy_commands,
    run_commands,
    schema_commands,
    serve_commands,
    view_commands,
)
from k2probe.cli.app import app, render
from k2probe.core.envnames import KEY_ENVS
from k2probe.core.errors import K2ProbeError
from k2probe.core.redact import RedactingStream, remember


@app.command()
def version() -> None:
    """Print k2probe's version."""
    render.out.print(__version__)


def _command_of(exc: Exception) -> str:
    """`k2probe agent` for an error in agent's options: the command whose --help answers it."""
    names = []
    ctx = getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["k2probe", *reversed(names)])


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: whatever runs stops the same way (a run is marked `interrupted`, its lease
    released, its sandboxes stopped), then k2probe exits 143."""


_TERMINATED: list[bool] = []  # SIGTERM came (whatever the exception became on its way out: click's Abort, …)


def _terminate(_signum: int, _frame: object) -> None:
    _TERMINATED.append(True)
    raise Terminated


def main() -> None:
    """Entry point: K2ProbeError becomes one line on stderr and its exit code; nothing else escapes as a traceback."""
    import signal

    with contextlib.suppress(ValueError):  # only the main thread may (k2probe called from a thread keeps its own)
        signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGUSR1") and sys.__stderr__ is not None:  # `kill -USR1 PID`: every thread's stack on stderr
        import faulthandler

        with contextlib.suppress(ValueError, OSError, RuntimeError, AttributeError, io.UnsupportedOperation):
            faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    sys.stdout = RedactingStream(sys.stdout)
    sys.stderr = RedactingStream(sys.stderr)
    for name in KEY_ENVS:  # known before anything can print
        remember(os.environ.get(name))
    try:
        code = app(standalone_mode=False)  # a typer.Exit inside comes back as its code (Ctrl-C: typer's 130)
        if _TERMINATED or code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except K2ProbeError as exc:
        render.err.print(f"k2probe: {exc.line()}", markup=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:  # click's name for Ctrl-C (and for SIGTERM, whose Terminated is its cause)
        terminated = bool(_TERMINATED)
        render.err.print(f"k2probe: {'terminated (SIGTERM)' if terminated else 'interrupted'}", markup=False)
        sys.exit(143 if terminated else 130)
    except typer.TyperException as exc:  # a usage error: one line, not click's box
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # (no arguments at all: the help was the answer)
            render.err.print(f"k2probe: {message} — see `{_command_of(exc)} --help`", markup=False)
        sys.exit(2)
    except OSError as exc:  # the filesystem said no: the user's terms, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        render.err.print(f"k2probe: {exc.strerror or exc}{where} — check the path, its permissions and free space",
                         markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        terminated = bool(_TERMINATED)
        render.err.print(f"k2probe: {'terminated (SIGTERM)' if terminated else 'interrupted'}", markup=False)
        sys.exit(143 if terminated else 130)
    except Exception as exc:  # a bug: say it in one line, keep the traceback for those who ask
        if os.environ.get("K2PROBE_DEBUG"):
            raise
        render.err.print(f"k2probe: internal error: {type(exc).__name__}: {exc} (set K2PROBE_DEBUG=1 for the "
                         "traceback and report it)", markup=False)
        sys.exit(2)


