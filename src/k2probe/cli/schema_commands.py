"""`k2probe schema [NAME]`: the published JSON schema of a command's --json document."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from k2probe.cli.app import app
from k2probe.core.errors import UsageError


@app.command()
def schema(name: Annotated[str | None, typer.Argument(help="a command with --json, e.g. eval; none: list them",
                                                      metavar="NAME")] = None) -> None:
    """The JSON schema (draft 2020-12) of a command's --json document; without NAME, the commands that have one."""
    from k2probe.report.documents import documents, json_schema

    names = sorted(documents())
    if name is None:
        sys.stdout.write("".join(f"{n}\n" for n in names))
        return
    if name not in names:
        raise UsageError(f"no --json document named {name!r}", fix=f"one of: {', '.join(names)}")
    sys.stdout.write(json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n")
