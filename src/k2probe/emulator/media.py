"""What the emulator does with images and videos: decode data URLs and ms:// files, check types and resolutions."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from k2probe.core.mediatypes import IMAGE_TYPES, VIDEO_TYPES, fits, heif_size, sniff
from k2probe.emulator.contract import bad_request
from k2probe.emulator.files import FileStore

IMAGE_MAX = (4096, 2160)
VIDEO_MAX = (1920, 1080)


@dataclass
class Seen:
    """One media part as the emulator decoded it."""

    kind: str
    mime: str
    width: int
    height: int
    size: int
    sha256: str

    def note(self, index: int) -> str:
        return (f"I received {self.kind} {index}: {self.mime.split('/')[1].upper()} {self.width}x{self.height}, "
                f"{self.size} bytes, sha256 {self.sha256[:12]}.")

    @property
    def tokens(self) -> int:
        return max(1, math.ceil(self.width * self.height / 784)) if self.kind == "image" else 1024


def _decode_image(data: bytes) -> tuple[int, int]:
    from PIL import Image

    if sniff(data) in ("image/heic", "image/heif"):
        size = heif_size(data)
        if size is None:
            raise ValueError("no ispe box")
        return size

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def _decode_video(data: bytes) -> tuple[int, int]:
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            return frame.width, frame.height
    raise ValueError("no video frame")


def _bytes_of(url: str, kind: str, files: FileStore) -> tuple[str | None, bytes]:
    if url.startswith("ms://"):
        stored = files.find(url.removeprefix("ms://"))
        if stored is None:
            raise bad_request(f"Invalid request: file {url} not found")
        return None, stored.data
    if not url.startswith("data:"):
        raise bad_request(f"Invalid request: {kind}_url must be a base64 data URL or ms://<file_id>; "
                          "public URLs are not supported")
    header, _, payload = url.partition(",")
    declared = header.removeprefix("data:").removesuffix(";base64")
    if not header.endswith(";base64"):
        raise bad_request(f"Invalid request: unsupported {kind} format: {declared}")
    try:
        return declared, base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"Invalid request: {kind} data is not valid base64") from exc


def inspect_media(body: dict[str, Any], files: FileStore) -> list[Seen]:
    """Decode every image/video part; raise Moonshot-style 400s for what the API would refuse."""
    seen: list[Seen] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and content.lstrip().startswith("[{") and '"type"' in content:
            try:
                if isinstance(json.loads(content), list):
                    raise bad_request("Invalid request: content must be an array of parts, not a string holding JSON")
            except json.JSONDecodeError:
                pass
        if not isinstance(content, list):
            continue
        for part in content:
            kind = {"image_url": "image", "video_url": "video"}.get(str(part.get("type")) if isinstance(part, dict) else "")
            if kind is None:
                continue
            url = str((part.get(f"{kind}_url") or {}).get("url", ""))
            declared, data = _bytes_of(url, kind, files)
            actual = sniff(data)
            accepted = IMAGE_TYPES if kind == "image" else VIDEO_TYPES
            if declared is not None and declared not in accepted:
                raise bad_request(f"Invalid request: unsupported {kind} format: {declared}")
            if actual is None or actual not in accepted:
                raise bad_request(f"Invalid request: unsupported {kind} format: {declared or 'unknown'}")
            if declared is not None and declared != actual:
                raise bad_request(f"Invalid request: {kind} data is {actual} but was declared as {declared}")
            try:
                width, height = _decode_image(data) if kind == "image" else _decode_video(data)
            except Exception as exc:  # Pillow and PyAV raise many types for broken input
                raise bad_request(f"Invalid request: failed to decode {kind}: {type(exc).__name__}") from exc
            limit = IMAGE_MAX if kind == "image" else VIDEO_MAX
            if not fits(width, height, limit):
                raise bad_request(f"Invalid request: {kind} resolution {width}x{height} exceeds the limit "
                                  f"{limit[0]}x{limit[1]}")
            seen.append(Seen(kind, actual, width, height, len(data), hashlib.sha256(data).hexdigest()))
    return seen


def text_only(messages: list[Any]) -> list[Any]:
    """Messages with media parts removed, for token estimates of the text."""
    out = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            parts = [p for p in message["content"] if not (isinstance(p, dict) and p.get("type") in
                                                             ("image_url", "video_url"))]
            message = {**message, "content": parts}
        out.append(message)
    return out
