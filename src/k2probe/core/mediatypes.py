"""Media types the Kimi API accepts, and what a file really is, read from its first bytes (shared with the emulator)."""

from __future__ import annotations

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/heic", "image/heif")
VIDEO_TYPES = ("video/mp4", "video/mpeg", "video/quicktime", "video/x-msvideo", "video/x-flv", "video/mpg",
               "video/webm", "video/x-ms-wmv", "video/3gpp")
_FTYP_IMAGE = {b"heic": "image/heic", b"heix": "image/heic", b"hevc": "image/heic", b"heim": "image/heic",
               b"mif1": "image/heif", b"msf1": "image/heif"}
_FTYP_VIDEO_QT = (b"qt  ",)
_FTYP_3GP = (b"3gp", b"3g2")


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes say they are, or None for anything the API does not take."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image/bmp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _FTYP_IMAGE:
            return _FTYP_IMAGE[brand]
        if brand in _FTYP_VIDEO_QT:
            return "video/quicktime"
        if brand[:3] in _FTYP_3GP:
            return "video/3gpp"
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"FLV"):
        return "video/x-flv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "video/mpeg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video/x-ms-wmv"
    return None


def describe_unknown(data: bytes) -> str:
    """A human word for bytes that are not an accepted media type (SVG, text, HTML, empty)."""
    if not data:
        return "an empty file"
    text = data[:512].lstrip().lower()
    if (text.startswith(b"<?xml") and b"<svg" in text) or text.startswith(b"<svg"):
        return "an SVG drawing (vector images are not accepted)"
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    try:
        data[:512].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "an unknown binary format"


def kind_of(mime: str) -> str:
    return "image" if mime.startswith("image/") else "video"


def heif_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a HEIC/HEIF file's `ispe` box (Pillow cannot decode HEIF without a plugin)."""
    at = data.find(b"ispe", 0, 1 << 20)
    if at < 4 or len(data) < at + 16:
        return None
    width = int.from_bytes(data[at + 8:at + 12], "big")
    height = int.from_bytes(data[at + 12:at + 16], "big")
    return (width, height) if width and height else None


def fits(width: int, height: int, limit: tuple[int, int]) -> bool:
    """Within the limit in either orientation (a portrait 2160×4096 image fits 4096×2160)."""
    return max(width, height) <= max(limit) and min(width, height) <= min(limit)


def media_size(data: bytes, mime: str) -> tuple[int, int] | None:
    """Width and height as the file's header says them, without decoding a pixel or a frame (Pillow's lazy open;
    PyAV's stream header; HEIF's ispe box); None when the header does not say (a file broken or cut short)."""
    import io

    try:
        if mime in ("image/heic", "image/heif"):
            return heif_size(data)
        if mime.startswith("image/"):
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                return image.size
        import av

        with av.open(io.BytesIO(data), mode="r") as container:
            streams = container.streams.video
            if streams and streams[0].codec_context.width:
                return streams[0].codec_context.width, streams[0].codec_context.height
    except Exception:  # Pillow and PyAV raise many types for broken input: the route says what it makes of it
        return None
    return None
