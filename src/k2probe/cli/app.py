"""The command line's shared parts: the typer app, the options every command shares (each also an environment
variable), and the helpers commands use to run, bound and report an activity."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from k2probe import __version__
from k2probe.core.errors import ConfigError, K2ProbeError, ProbeFailed

if TYPE_CHECKING:  # each command imports what it uses, so `--help` and `routes` start fast

    from k2probe.client.media import Media
    from k2probe.core.failures import Failure
    from k2probe.report import terminal as render
else:
    class _LazyRender:
        """`render` (rich's consoles) loaded on first use: `snippet` and `--version` print without it."""

        def __getattr__(self, name: str) -> Any:
            from k2probe.report import terminal as render

            return getattr(render, name)

    render = _LazyRender()


__all__ = ["JsonOpt", "RouteOpt", "StrictOpt", "TimeoutOpt", "app", "load_all_media", "render"]

T = TypeVar("T")
# typer 0.29 prints an argument's Python type beside its name (`PROMPT <str>`); the name already says what to give
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]}, rich_markup_mode=None,
                  help="Test and evaluate coding-model APIs: Kimi K2.7 Code through any OpenAI-compatible route.")

def _finite(value: float | None) -> float | None:
    """Option callback: NaN and infinity are not numbers a limit can be."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


RouteOpt = Annotated[str | None, typer.Option("--route", envvar="K2PROBE_ROUTE", help="route name from k2probe.toml",
                                              metavar="NAME")]
JsonOpt = Annotated[bool, typer.Option("--json", envvar="K2PROBE_JSON", help="print one JSON document on stdout")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", envvar="K2PROBE_TIMEOUT", min=1, max=86400, callback=_finite,
                                           help="seconds for the whole command, retries included", metavar="NUMBER")]
StrictOpt = Annotated[bool, typer.Option("--strict", envvar="K2PROBE_STRICT",
                                         help="refuse a request the model would reject instead of fixing it")]


CONFIG_CODES = {"invalid_key", "bad_base_url", "unreachable", "unknown_model", "doubled_v1", "missing_v1"}


def _notices(notices: list[str]) -> None:
    """Notices go to stderr, so --json keeps stdout to the one document."""
    for line in notices:
        render.notice(line)


def load_all_media(route: str | None, images: list[Path] | None, videos: list[Path] | None, *,
                   fit: bool) -> list[Media]:
    """Read and check every --image and --video before anything starts (bad files are exit 2, nothing sent)."""
    from k2probe.client.media import load_media
    from k2probe.core.config import load_file, resolve_route
    from k2probe.core.profiles import profile_for

    if not images and not videos:
        return []
    selected = resolve_route(route, load_file())
    limits = profile_for(selected.model, selected.profile).media
    return ([load_media(p, "image", limits, fit=fit) for p in images or []]
            + [load_media(p, "video", limits, fit=fit) for p in videos or []])


def _failed(what: str, failure: Failure | None) -> K2ProbeError:
    """A setup problem (key, URL, model) is bad configuration, exit 2; anything else means the tested thing failed."""
    from k2probe.diagnose.doctor import code_for

    if failure is None:
        return ProbeFailed(f"{what}: the answer was empty", fix="run `k2probe doctor` to find out why")
    code = code_for(failure)
    error = ConfigError if code in CONFIG_CODES else ProbeFailed
    return error(f"{what}: {failure.line()}", fix=f"looks like {code}: run `k2probe doctor` for the fix")




def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"k2probe {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(show_version: Annotated[bool, typer.Option("--version", "-V", callback=_print_version, is_eager=True,
                                                     help="print the version and exit")] = False) -> None:
    """Test and evaluate coding-model APIs: Kimi K2.7 Code through any OpenAI-compatible route."""


