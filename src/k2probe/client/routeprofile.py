"""The one rule for a route's profile, used by every command: configured → the model id → the gateway's
`/model/info` (LiteLLM) or its `/models` entry → the `model` field of one short answer, saying which. An inference
is made once per route and kept in K2PROBE_HOME/profiles.json under a fingerprint of the route (base URL, model id,
headers, params — never the key), so a changed route is resolved again; `refresh` (doctor) asks the route afresh."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx

from k2probe.client.answers import Malformed, NotJson, load
from k2probe.core.config import Route, home, is_secret_header, key_problem, url_problem
from k2probe.core.failures import words
from k2probe.core.profiles import (
    ANSWER,
    GENERIC,
    MODEL_INFO,
    MODEL_LIST,
    NOT_FOUND,
    PROFILES,
    ProfileChoice,
    choose_profile,
    known_in,
)
from k2probe.core.sharedfile import SharedFileBusy, read_json, update_json

CACHE_FILE = "profiles.json"
RULES = 1  # raise when the rule changes: every kept inference is then made again
MAX_ENTRIES = 200  # the oldest inferences are dropped past this many routes
MAX_BODY = 4 * 1024 * 1024  # a model list or answer larger than this is not read further
LOOKUP_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 30.0
PING = {"role": "user", "content": "Reply with the single word: ok"}


class _Unanswered(Exception):
    """The route did not answer a step usefully: the resolution is incomplete and is not kept."""


def resolve_profile(route: Route, *, refresh: bool = False) -> ProfileChoice:
    """The profile `route` uses and how it was found. Only a route whose configuration and model id name no profile
    is asked (and only once, unless `refresh`); a route that cannot be asked gets the generic profile, saying why."""
    offline = choose_profile(route.model, route.profile)
    if not offline.generic or route.profile:
        return offline
    base, key = route.base_url or "", route.key()
    if not base or url_problem(base) is not None or (key and key_problem(key) is not None):
        return ProfileChoice(PROFILES[GENERIC], NOT_FOUND, "not asked: the base URL or key cannot be sent")
    kept = not route.emulated  # an emulator's URL changes every start; asking it costs nothing
    path = home() / CACHE_FILE
    ident = fingerprint(route)
    if kept and not refresh:
        entry = read_json(path, {}).get("routes", {})
        cached = _from_entry(entry.get(ident) if isinstance(entry, dict) else None)
        if cached is not None:
            return cached
    try:
        choice = _ask(route)
    except _Unanswered as exc:
        return ProfileChoice(PROFILES[GENERIC], NOT_FOUND, f"the route could not be asked what is behind it: {exc}")
    if kept:
        _keep(path, ident, route.name, choice)
    return choice


def fingerprint(route: Route) -> str:
    """What identifies a route for its profile: base URL, model id, configured profile, headers (a secret header by
    name only), params, and the rule's version. Never the key."""
    parts = {"rules": RULES, "profiles": sorted(PROFILES), "base_url": route.base_url, "model": route.model,
             "profile": route.profile, "params": route.params, "emulated": route.emulated,
             "headers": {k: (None if is_secret_header(k) else v) for k, v in sorted(route.headers.items())}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _from_entry(entry: Any) -> ProfileChoice | None:
    if not isinstance(entry, dict) or entry.get("profile") not in PROFILES or \
            entry.get("how") not in (MODEL_INFO, MODEL_LIST, ANSWER, NOT_FOUND):
        return None
    at = entry.get("at")
    return ProfileChoice(PROFILES[entry["profile"]], entry["how"], str(entry.get("detail", ""))[:300],
                         cached_at=float(at) if isinstance(at, int | float) else 0.0)


def _keep(path: Path, ident: str, name: str, choice: ProfileChoice) -> None:
    """Add the inference to the shared file (a busy or unwritable file only means it is made again next time)."""
    def change(data: Any) -> Any:
        found = data.get("routes") if isinstance(data, dict) else None
        routes: dict[str, Any] = found if isinstance(found, dict) else {}
        routes[ident] = {"route": name, "profile": choice.profile.name, "how": choice.how, "detail": choice.detail,
                         "at": time.time()}
        newest = sorted(routes.items(), key=lambda item: -float(item[1].get("at", 0) if isinstance(item[1], dict)
                                                                else 0))[:MAX_ENTRIES]
        return {"rules": RULES, "routes": dict(newest)}

    with contextlib.suppress(OSError, SharedFileBusy):
        update_json(path, change, {}, indent=1)


def _ask(route: Route) -> ProfileChoice:
    """The gateway's word first (no tokens spent), then one short answer's `model` field."""
    base, alias = (route.base_url or "").rstrip("/"), route.model
    headers = {**route.headers, "Authorization": f"Bearer {route.key()}"}
    with httpx.Client(headers=headers, timeout=LOOKUP_TIMEOUT_S) as client:
        behind = _model_info(client, base, alias)
        if behind is not None:
            found = known_in(behind)
            said = f"the gateway's /model/info maps it to {behind!r}"
            return ProfileChoice(found or PROFILES[GENERIC], MODEL_INFO if found else NOT_FOUND, said)
        listed = _listed(client, base, alias)
        if listed is not None and (found := known_in(listed)) is not None:
            return ProfileChoice(found, MODEL_LIST, f"the gateway's /models entry for it says {listed!r}")
        served = _answered(client, base, alias)
        found = known_in(served)
        how = ANSWER if found else NOT_FOUND
        return ProfileChoice(found or PROFILES[GENERIC], how, f"an answer's model field names {served!r}" if served
                             else "neither the gateway nor an answer names the model behind it")


def _get(client: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    """Status and the untrusted JSON body (None when it is not JSON or too large). _Unanswered when nothing answered."""
    try:
        with client.stream(method, url, **kwargs) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    return response.status_code, None
            status = response.status_code
    except (httpx.HTTPError, ValueError, UnicodeError) as exc:
        raise _Unanswered(f"{type(exc).__name__} at {method} {url.rsplit('/', 1)[-1]}") from None
    try:
        return status, load(b"".join(chunks).decode("utf-8", "replace"))
    except (NotJson, Malformed):
        return status, None


def _model_info(client: httpx.Client, base: str, alias: str) -> str | None:
    """What LiteLLM's GET /model/info says the alias reaches (`litellm_params.model`); None when it does not say."""
    status, data = _get(client, "GET", base + "/model/info")
    entries = data.get("data") if status == 200 and isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("model_name") == alias:
            params = entry.get("litellm_params")
            target = params.get("model") if isinstance(params, dict) else None
            return words(target, 200) if isinstance(target, str) and target else None
    return None


def _listed(client: httpx.Client, base: str, alias: str) -> str | None:
    """The /models entry for the alias, without its id (a gateway may name the model behind it: root, parent…)."""
    status, data = _get(client, "GET", base + "/models")
    if status in (401, 403):
        raise _Unanswered(f"GET /models answered HTTP {status} (is the key right? `k2probe doctor` checks)")
    entries = data.get("data") if status == 200 and isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("id") == alias:
            rest = {k: v for k, v in entry.items() if k != "id" and isinstance(v, str)}
            return words(json.dumps(rest), 300) if rest else None
    return None


def _answered(client: httpx.Client, base: str, alias: str) -> str:
    """The `model` field of one short answer to the route ("" when the answer has none)."""
    body = {"model": alias, "messages": [PING], "max_tokens": 16}
    status, data = _get(client, "POST", base + "/chat/completions", json=body, timeout=PING_TIMEOUT_S)
    if status != 200 or not isinstance(data, dict):
        raise _Unanswered(f"a short request answered HTTP {status}" + ("" if status != 200 else " without JSON"))
    served = data.get("model")
    return words(served, 200) if isinstance(served, str) else ""
