"""What keeps the viewer to the person who started it: a pure ASGI middleware that answers only for the host it
serves (a DNS-rebinding page names another Host), asks for the access token (a form, never in a URL) when it serves
beyond loopback, and
refuses a state-changing request from another origin; the app checks each form's token against the session
(`check_form`), so a page elsewhere that cannot read the session cannot post."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "k2probe_session"
ACCESS_COOKIE = "k2probe_access"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
HEADERS = [(b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                        b"script-src 'self'; frame-ancestors 'none'; form-action 'self'"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Guard:
    """Wraps the viewer's app. `hosts`: the Host header values it answers to (None: any, when the token guards it);
    `token_hash`: the sha256 of the access token (None on loopback, where none is asked); the token is never kept."""

    def __init__(self, app: ASGIApp, *, hosts: set[str] | None, token_hash: str | None = None) -> None:
        self.app, self.hosts, self.token_hash = app, hosts, token_hash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # the viewer speaks HTTP only: a websocket is refused before anything sees it
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.hosts is not None and host not in self.hosts:
            await PlainTextResponse("unknown Host: open the address k2probe view printed", 421)(scope, receive, send)
            return
        cookies = cookie_parser(headers.get("cookie", ""))  # lenient: another localhost app's odd cookie is skipped
        if self.token_hash is not None and not self._granted(scope, cookies):
            await self._ask_token(scope, receive, send)
            return
        session = cookies.get(SESSION_COOKIE) or None
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            same = origin.split("://", 1)[-1] == host if origin is not None else \
                headers.get("sec-fetch-site") == "same-origin"
            if not same:  # a browser names the page a post comes from: it must be this viewer's own
                await PlainTextResponse("cross-origin request refused", 403)(scope, receive, send)
                return
        fresh = None if session is not None else secrets.token_urlsafe(24)
        scope.setdefault("state", {})["session"] = session or fresh

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [*message.get("headers", []), *HEADERS]
                if fresh is not None:
                    raw.append((b"set-cookie", f"{SESSION_COOKIE}={fresh}; HttpOnly; SameSite=Lax; Path=/".encode()))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _granted(self, scope: Scope, cookies: dict[str, str]) -> bool:
        assert self.token_hash is not None
        held = cookies.get(ACCESS_COOKIE, "")
        return hmac.compare_digest(_digest(held), self.token_hash)

    async def _ask_token(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A form asking for the access token; its POST to /_login turns the right token into a cookie."""
        from urllib.parse import parse_qs

        assert self.token_hash is not None
        if scope["method"] == "POST" and scope.get("path") == "/_login":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body") or len(body) > 4096:
                    break
            given = parse_qs(body.decode(errors="replace")).get("token", [""])[0]
            if given and hmac.compare_digest(_digest(given), self.token_hash):
                response: Response = RedirectResponse("/", 303)
                response.set_cookie(ACCESS_COOKIE, given, httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
        await HTMLResponse(LOGIN, 401, headers=dict((k.decode(), v.decode()) for k, v in HEADERS))(scope, receive, send)


LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>k2probe view</title></head><body>
<form method="post" action="/_login"><p>This viewer asks for the access token <code>k2probe view</code> printed when it
started.</p><label>access token <input name="token" type="password" autofocus></label> <button>open</button></form>
</body></html>"""


PROCESS_SECRET = secrets.token_bytes(32)  # made when the viewer starts, never written anywhere


def form_token(session: str) -> str:
    """The token a page's forms carry for this session: the session cookie signed with this process's secret, so a
    page that sets a session cookie of its own (cookies ignore ports) still cannot know the token."""
    return hmac.new(PROCESS_SECRET, session.encode(), hashlib.sha256).hexdigest()


def check_form(session: str | None, given: str | None) -> bool:
    return session is not None and given is not None and hmac.compare_digest(form_token(session), given)
