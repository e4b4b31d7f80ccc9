"""Large or reused media through the files API: uploaded once per route, cached by content hash, referenced as ms://."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import openai

from k2probe.client.media import Media
from k2probe.client.transport import Transport
from k2probe.core.config import Route, home
from k2probe.core.errors import ConfigError, ProbeFailed
from k2probe.core.failures import from_exception
from k2probe.core.records import CallRecord
from k2probe.core.sharedfile import SharedFileBusy, read_json, update_json

DEFAULT_THRESHOLD_MB = 10.0


def upload_threshold_bytes() -> int:
    """Videos larger than this go through the files API by themselves (K2PROBE_UPLOAD_THRESHOLD_MB, default 10)."""
    raw = os.environ.get("K2PROBE_UPLOAD_THRESHOLD_MB", str(DEFAULT_THRESHOLD_MB))
    try:
        return int(float(raw) * 1024 * 1024)
    except ValueError as exc:
        raise ConfigError(f"K2PROBE_UPLOAD_THRESHOLD_MB={raw!r} is not a number", fix="set it in megabytes, e.g. 10") \
            from exc


class UploadCache:
    """`K2PROBE_HOME/uploads.json`: content hash + route → file id. Holds no key."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "uploads.json"
        self.entries = _entries(read_json(self.path, {}))  # a damaged cache only costs a re-upload

    @staticmethod
    def key(route: Route, media: Media) -> str:
        return f"{route.name}|{route.base_url}|{media.sha256}"

    def remember(self, key: str, entry: dict[str, Any]) -> None:
        """Add one upload to the file as it is now, under its lock: uploads other processes made meanwhile stay."""
        def added(now: Any) -> dict[str, dict[str, Any]]:
            return {**_entries(now), key: entry}

        try:
            self.entries = update_json(self.path, added, {}, indent=2)
        except SharedFileBusy:
            self.entries[key] = entry  # not remembered across runs: the next one uploads again


def _entries(value: Any) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}


def _record(transport: Transport, endpoint: str, media: Media, started: float, status: int | None,
            error: tuple[str, str] | None = None) -> None:
    """The files API call, recorded where the transport's chat calls are (its `on_call`)."""
    if transport.on_call is None:
        return
    call = CallRecord(route=transport.route.name, model=transport.route.model, endpoint=endpoint, stream=False,
                      request={"purpose": media.kind, "name": media.name}, status=status, media=[media.record()],
                      latency_ms=(time.perf_counter() - started) * 1000.0, started_at=time.time())
    if error:
        call.error_type, call.error_message = error
    transport.on_call(call)


async def _still_there(transport: Transport, media: Media, file_id: str) -> bool:
    started = time.perf_counter()
    try:
        await transport.client.files.retrieve(file_id)
    except openai.NotFoundError:
        _record(transport, f"GET /files/{file_id}", media, started, 404, ("not_found", "cached file is gone"))
        return False
    _record(transport, f"GET /files/{file_id}", media, started, 200)
    return True


async def upload(transport: Transport, media: Media, cache: UploadCache) -> bool:
    """Make `media` an ms:// reference; returns True when a cached upload was reused."""
    key = UploadCache.key(transport.route, media)
    cached = cache.entries.get(key)
    if cached and await _still_there(transport, media, cached["file_id"]):
        media.delivery, media.file_id = "uploaded", cached["file_id"]
        return True
    started = time.perf_counter()
    try:
        created = await transport.client.files.create(file=(media.name, media.data, media.mime),
                                                      purpose=media.kind)  # type: ignore[arg-type]
    except openai.APIError as exc:
        failure = from_exception(exc)
        _record(transport, "POST /files", media, started, failure.status, (failure.type, failure.message))
        raise ProbeFailed(f"upload of {media.name} ({len(media.data)} bytes) failed: {failure.line()}",
                          fix="delete old files, shrink the media (--fit), or check the account's storage") from exc
    _record(transport, "POST /files", media, started, 200)
    media.delivery, media.file_id = "uploaded", created.id
    cache.remember(key, {"file_id": created.id, "bytes": len(media.data), "name": media.name,
                         "uploaded_at": time.time()})
    return False


async def deliver(transport: Transport, items: list[Media], *, force_upload: bool) -> list[str]:
    """Upload what must or should be uploaded; say what happened to each item."""
    notes: list[str] = []
    threshold = upload_threshold_bytes()
    cache = UploadCache()
    for media in items:
        if force_upload or (media.kind == "video" and len(media.data) > threshold):
            reused = await upload(transport, media, cache)
            notes.append(f"{media.name}: {'reused upload' if reused else 'uploaded'} as ms://{media.file_id}")
        else:
            notes.append(f"{media.name}: inline {media.mime} {media.width}×{media.height}, {len(media.data)} bytes")
        if media.fitted:
            notes.append(f"{media.name}: --fit {media.fitted}")
    return notes
