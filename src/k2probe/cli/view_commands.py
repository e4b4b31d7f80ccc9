"""`k2probe view`: the local web viewer over the store."""

from __future__ import annotations

from typing import Annotated

import typer

from k2probe.cli.app import app, render


@app.command()
def view(host: Annotated[str, typer.Option(envvar="K2PROBE_VIEW_HOST",
                                           help="address to serve on (loopback; others need --allow-remote)",
                                           metavar="TEXT")] = "127.0.0.1",
         port: Annotated[int, typer.Option(envvar="K2PROBE_VIEW_PORT", min=0, max=65535, help="0: any free port",
                                           metavar="N")] = 7575,
         allow_remote: Annotated[bool, typer.Option("--allow-remote", envvar="K2PROBE_VIEW_ALLOW_REMOTE",
                                                    help="serve on a non-loopback --host, behind an access token "
                                                         "shown once")] = False) -> None:
    """Browse, compare and review runs in a browser: runs, samples and transcripts, review where you read."""
    from k2probe.recording.store import Store
    from k2probe.view.serve import Listening, serve

    def ready(where: Listening) -> None:
        render.notice(f"k2probe view on {where.link} (Ctrl-C to stop)")
        if where.token:
            render.notice(f"access token, shown this once and kept nowhere: {where.token}")

    store = Store()
    try:
        serve(store, host, port, allow_remote=allow_remote, on_ready=ready)
    finally:
        store.dispose()
