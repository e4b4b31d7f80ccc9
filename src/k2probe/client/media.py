"""Images and videos for a prompt: type read from the bytes, decoded, checked against the limits, fitted on request."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from k2probe.core.errors import UsageError
from k2probe.core.mediatypes import IMAGE_TYPES, VIDEO_TYPES, describe_unknown, fits, heif_size, kind_of, sniff
from k2probe.core.profiles import MediaLimits

PILLOW_SAVE = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF", "image/bmp": "BMP"}


@dataclass
class Media:
    """One image or video ready to send; `data` stays in memory, `record()` is what gets stored."""

    name: str
    kind: str
    mime: str
    data: bytes
    width: int
    height: int
    duration_s: float | None = None
    fitted: str | None = None
    delivery: str = "inline"
    file_id: str | None = None
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    def url(self) -> str:
        if self.file_id:
            return f"ms://{self.file_id}"
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def part(self) -> dict[str, Any]:
        key = f"{self.kind}_url"
        return {"type": key, key: {"url": self.url()}}

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "mime": self.mime, "bytes": len(self.data),
                "width": self.width, "height": self.height, "duration_s": self.duration_s, "fitted": self.fitted,
                "delivery": self.delivery, "file_id": self.file_id, "sha256": self.sha256}


def fitted_size(width: int, height: int, limit: tuple[int, int], even: bool = False) -> tuple[int, int]:
    long_side, short_side = max(limit), min(limit)
    scale = min(long_side / max(width, height), short_side / min(width, height), 1.0)
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    return (w - w % 2, h - h % 2) if even else (w, h)


MAX_DECODE_PIXELS = 100_000_000  # 10000×10000: over it, an image is refused from its header alone


def _image_size(data: bytes, name: str, mime: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    if mime in ("image/heic", "image/heif"):
        size = heif_size(data)
        if size is None:
            raise UsageError(f"{name}: {mime} without a readable size (no ispe box)", fix="re-export the image")
        return size

    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: our own check below says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            width, height = image.size
            if width * height > MAX_DECODE_PIXELS:  # refused from its header: never decoded
                raise UsageError(f"{name}: {mime} declares {width}×{height} ({width * height / 1e6:.0f} Mpx), more pixels "
                                 "than can be decoded safely", fix="send a smaller image")
            image.load()  # decodes every pixel: a truncated file fails here
            return image.size
    except Image.DecompressionBombError as exc:
        raise UsageError(f"{name}: {mime} declares more pixels than can be decoded safely ({exc})",
                         fix="send a smaller image") from exc
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise UsageError(f"{name}: corrupt or truncated {mime} ({exc})",
                         fix="re-export the image or take the screenshot again") from exc


def _video_info(data: bytes, name: str, mime: str) -> tuple[int, int, float | None]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise UsageError(f"{name}: {mime} file has no video stream", fix="send a file with video in it")
            stream = container.streams.video[0]
            duration = float(container.duration / 1_000_000) if container.duration else None
            for frame in container.decode(stream):
                return frame.width, frame.height, duration
    except av.FFmpegError as exc:
        raise UsageError(f"{name}: corrupt or truncated {mime} ({exc})", fix="re-encode the video") from exc
    raise UsageError(f"{name}: no decodable video frame", fix="re-encode the video")


def fit_image(data: bytes, mime: str, size: tuple[int, int]) -> tuple[bytes, str]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        resized = image.resize(size, Image.Resampling.LANCZOS)
        target = mime if mime in PILLOW_SAVE else "image/jpeg"
        if target == "image/jpeg" and resized.mode not in ("RGB", "L"):
            resized = resized.convert("RGB")
        out = io.BytesIO()
        resized.save(out, PILLOW_SAVE[target], **({"quality": 90} if target == "image/jpeg" else {}))
        return out.getvalue(), target


def fit_video(data: bytes, size: tuple[int, int]) -> bytes:
    """Re-encode to H.264 MP4 at `size` (audio dropped)."""
    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(data), mode="r") as source, av.open(out, mode="w", format="mp4") as target:
        src = source.streams.video[0]
        rate = src.average_rate or Fraction(25)
        stream = target.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for frame in source.decode(src):
            scaled = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            scaled.pts = None
            for packet in stream.encode(scaled):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    return out.getvalue()


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def load_media(path: Path, expected: str, limits: MediaLimits, *, fit: bool = False) -> Media:
    """Read, identify, decode and check one file; with fit, scale it into the limits. Errors are UsageError (exit 2)."""
    name = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, /dev/zero never ends
            raise UsageError(f"{name} is not a regular file", fix="give the path of an image or video file")
        if info.st_size > limits.body_max_bytes:
            raise UsageError(f"{name} is {info.st_size / 2**20:.0f} MiB, over the {limits.body_max_bytes / 2**20:.0f} MiB "
                             "request limit", fix="send a smaller file")
        with path.open("rb") as handle:
            data = handle.read(limits.body_max_bytes + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}", fix="check the path") from exc
    mime = sniff(data)
    accepted = IMAGE_TYPES if expected == "image" else VIDEO_TYPES
    if mime is None or mime not in accepted:
        what = describe_unknown(data) if mime is None else f"{_article(kind_of(mime))} {kind_of(mime)} ({mime})"
        names = ", ".join(t.split("/")[1] for t in accepted)
        raise UsageError(f"{name} is {what}, not {_article(expected)} {expected} the API accepts",
                         fix=f"send one of: {names}" + (" (use --video for videos)" if mime and expected == "image"
                                                         else ""))
    limit = limits.image_max if expected == "image" else limits.video_max
    if expected == "image":
        width, height = _image_size(data, name, mime)
        duration = None
    else:
        width, height, duration = _video_info(data, name, mime)
    media = Media(path.name, expected, mime, data, width, height, duration)
    if fits(width, height, limit):
        return media
    if not fit or mime in ("image/heic", "image/heif"):
        how = "pass --fit to scale it down, or resize it yourself" if fit is False else "convert it to JPEG first"
        raise UsageError(f"{name}: {expected} is {width}×{height}, over the {limit[0]}×{limit[1]} limit", fix=how)
    if expected == "image":
        size = fitted_size(width, height, limit)
        new, new_mime = fit_image(data, mime, size)
    else:
        size = fitted_size(width, height, limit, even=True)
        new, new_mime = fit_video(data, size), "video/mp4"
    fitted = Media(path.name, expected, new_mime, new, size[0], size[1], duration)
    fitted.fitted = (f"scaled {width}×{height} → {size[0]}×{size[1]}"
                     + ("" if new_mime == mime else f", re-encoded {mime} → {new_mime}")
                     + (", audio dropped" if expected == "video" else ""))
    return fitted
