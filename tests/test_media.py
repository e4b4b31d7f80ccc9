"""Images and video: type from the bytes, limits checked before sending, --fit, the files API and its cache."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from k2probe.core.errors import UsageError
from k2probe.diagnose.chat import check_body_size

from .conftest import EMULATOR_KEY, route_env
from .media_files import image, video

AUTH = {"Authorization": f"Bearer {EMULATOR_KEY}"}


def _chat_json(cli, env, *args):
    result = cli("chat", "Describe what you see", "--json", *args, env=env)
    assert result.code == 0, result.stderr
    return result.json()


@pytest.mark.parametrize(("fmt", "mime", "label"), [("PNG", "image/png", "PNG"), ("JPEG", "image/jpeg", "JPEG"),
                                                     ("WEBP", "image/webp", "WEBP"), ("GIF", "image/gif", "GIF")])
def test_images_arrive_intact(cli, emulator, workdir: Path, fmt, mime, label):
    path = image(workdir / f"shot.{fmt.lower()}", fmt, (321, 203))
    data = _chat_json(cli, route_env(emulator()), "--image", str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"I received image 1: {label} 321x203, {path.stat().st_size} bytes, sha256 {digest[:12]}." in data["answer"]
    assert data["media"][0] | {"sha256": digest} == data["media"][0]
    assert data["media"][0]["mime"] == mime and data["media"][0]["delivery"] == "inline"


def test_type_is_read_from_bytes_not_extension(cli, emulator, workdir: Path):
    path = image(workdir / "really-a-jpeg.png", "JPEG")
    data = _chat_json(cli, route_env(emulator()), "--image", str(path))
    assert data["media"][0]["mime"] == "image/jpeg" and "I received image 1: JPEG" in data["answer"]


def _refused_before_sending(cli, server, args, *needles):
    result = cli("chat", "x", *args, env=route_env(server))
    assert result.code == 2 and "Traceback" not in result.stderr
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("k2probe:")]
    assert len(line) == 1, result.stderr
    for needle in needles:
        assert needle in line[0]
    assert server.state.requests_seen == 0


def test_svg_text_and_truncated_files_are_refused_before_any_request(cli, emulator, workdir: Path):
    server = emulator()
    (workdir / "logo.svg").write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')
    (workdir / "notes.png").write_text("this is text, not a picture\n")
    jpeg = image(workdir / "photo.jpg", "JPEG", (400, 300)).read_bytes()
    (workdir / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    _refused_before_sending(cli, server, ["--image", "logo.svg"], "SVG", "not an image the API accepts")
    _refused_before_sending(cli, server, ["--image", "notes.png"], "notes.png is text")
    _refused_before_sending(cli, server, ["--image", "cut.jpg"], "corrupt or truncated image/jpeg")
    _refused_before_sending(cli, server, ["--image", "missing.png"], "cannot read missing.png")
    _refused_before_sending(cli, server, ["--video", "photo.jpg"], "photo.jpg is an image (image/jpeg), not a video")


def test_8k_png_is_refused_then_fitted(cli, emulator, workdir: Path):
    server = emulator()
    path = image(workdir / "8k.png", "PNG", (7680, 4320))
    _refused_before_sending(cli, server, ["--image", str(path)], "7680×4320, over the 4096×2160 limit", "--fit")
    data = _chat_json(cli, route_env(server), "--image", str(path), "--fit")
    assert "I received image 1: PNG 3840x2160" in data["answer"]
    assert data["media"][0]["fitted"] == "scaled 7680×4320 → 3840×2160"
    assert any("--fit scaled" in note for note in data["media_notes"])


def test_short_mp4_inline(cli, emulator, workdir: Path):
    clip = video(workdir / "clip.mp4")
    data = _chat_json(cli, route_env(emulator()), "--video", str(clip))
    assert "I received video 1: MP4 320x240" in data["answer"]
    assert data["media"][0]["delivery"] == "inline" and data["media"][0]["duration_s"] == pytest.approx(1.0, abs=0.2)


def test_oversized_video_is_refused_then_reencoded(cli, emulator, workdir: Path):
    server = emulator()
    clip = video(workdir / "qhd.mp4", (2560, 1440), frames=3)
    _refused_before_sending(cli, server, ["--video", str(clip)], "2560×1440, over the 1920×1080 limit")
    data = _chat_json(cli, route_env(server), "--video", str(clip), "--fit")
    assert "I received video 1: MP4 1920x1080" in data["answer"]
    assert data["media"][0]["fitted"].startswith("scaled 2560×1440 → 1920×1080")


def test_large_video_is_uploaded_once_and_reused(cli, emulator, workdir: Path):
    server = emulator()
    clip = video(workdir / "big.mp4", (320, 240), frames=24, noise=True)
    env = {**route_env(server), "K2PROBE_UPLOAD_THRESHOLD_MB": str(clip.stat().st_size / 2 / (1024 * 1024))}
    first = _chat_json(cli, env, "--video", str(clip))
    assert first["media"][0]["delivery"] == "uploaded" and first["media"][0]["file_id"].startswith("file-")
    assert "I received video 1: MP4 320x240" in first["answer"]
    second = _chat_json(cli, env, "--video", str(clip))
    assert second["media"][0]["file_id"] == first["media"][0]["file_id"]
    assert any("reused upload" in note for note in second["media_notes"])
    assert len(server.state.files.list()) == 1  # one upload, no second
    small = _chat_json(cli, env, "--image", str(image(workdir / "s.png", "PNG")))
    assert small["media"][0]["delivery"] == "inline"  # images stay inline unless --upload
    forced = _chat_json(cli, env, "--image", str(workdir / "s.png"), "--upload")
    assert forced["media"][0]["delivery"] == "uploaded"
    with sqlite3.connect(workdir / "home" / "k2probe.db") as db:
        rows = db.execute("select endpoint, media, request from calls order by id").fetchall()
    endpoints = [r[0] for r in rows]
    assert endpoints.count("POST /files") == 2 and any(e.startswith("GET /files/") for e in endpoints)
    chat_media = [json.loads(r[1]) for r in rows if r[0] == "/chat/completions"]
    assert chat_media[0][0]["bytes"] == clip.stat().st_size and chat_media[0][0]["width"] == 320
    assert all(len(r[2]) < 5000 for r in rows)  # base64 payloads are not stored


def test_upload_failure_reports_the_servers_message(cli, emulator, workdir: Path):
    server = emulator(file_max_bytes=1000)
    big = image(workdir / "noise.bmp", "BMP", (200, 200))
    result = cli("chat", "x", "--image", str(big), "--upload", env=route_env(server))
    assert result.code == 1 and "Traceback" not in result.stderr
    assert f"file size exceeds the limit: {big.stat().st_size} bytes > 1000 bytes" in result.stderr
    assert server.state.requests_seen == 0  # no chat request after a failed upload


def test_body_limit_is_checked_before_sending():
    with pytest.raises(UsageError, match="over the 0 MB limit"):
        check_body_size({"messages": ["x" * 1000]}, 400)


# ---- the emulator's side ---------------------------------------------------------------------------------------
def _send_part(server, part, **settings):
    body = {"model": "kimi-k2.7-code", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, part]}]}
    return httpx.post(server.base_url + "/chat/completions", json=body, headers=AUTH, timeout=30)


def _data_url(mime: str, data: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def test_emulator_rejects_unsupported_and_mislabelled(emulator, workdir: Path):
    server = emulator()
    text = _send_part(server, _data_url("text/plain; charset=utf-8", b"hello"))
    assert text.status_code == 400 and text.json() == {"error": {
        "message": "Invalid request: unsupported image format: text/plain; charset=utf-8",
        "type": "invalid_request_error"}}
    png = image(workdir / "a.png", "PNG").read_bytes()
    mislabelled = _send_part(server, _data_url("image/jpeg", png))
    assert mislabelled.status_code == 400 and "image/png but was declared as image/jpeg" in mislabelled.text
    public = _send_part(server, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
    assert public.status_code == 400 and "public URLs are not supported" in public.text
    unknown = _send_part(server, {"type": "image_url", "image_url": {"url": "ms://file-nope"}})
    assert unknown.status_code == 400 and "file ms://file-nope not found" in unknown.text
    big = image(workdir / "big.png", "PNG", (4200, 2000)).read_bytes()
    too_big = _send_part(server, _data_url("image/png", big))
    assert too_big.status_code == 400 and "image resolution 4200x2000 exceeds the limit 4096x2160" in too_big.text
    stringified = httpx.post(server.base_url + "/chat/completions", headers=AUTH, json={
        "model": "kimi-k2.7-code", "messages": [{"role": "user", "content": json.dumps([{"type": "text", "text": "x"}])}]})
    assert stringified.status_code == 400 and "not a string holding JSON" in stringified.text


def test_emulator_body_limit(emulator, workdir: Path):
    server = emulator(max_body_bytes=10_000)
    png = image(workdir / "n.bmp", "BMP", (100, 100)).read_bytes()
    response = _send_part(server, _data_url("image/bmp", png))
    assert response.status_code == 400 and "exceeds the 0.00953674 MB limit" in response.text


def test_upload_count_limit_is_reported(cli, emulator, workdir: Path):
    server = emulator(file_max_count=1)
    first = image(workdir / "one.png", "PNG", (10, 10), "red")
    second = image(workdir / "two.png", "PNG", (10, 10), "blue")
    assert cli("chat", "x", "--image", str(first), "--upload", env=route_env(server)).code == 0
    result = cli("chat", "x", "--image", str(second), "--upload", env=route_env(server))
    assert result.code == 1 and "too many files: the limit is 1; delete some first" in result.stderr


def _heic(width: int, height: int) -> bytes:
    """The boxes that say what a HEIC file is and how big (ftyp, then an ispe property), as an iPhone writes them."""
    ftyp = (24).to_bytes(4, "big") + b"ftypheic" + (0).to_bytes(4, "big") + b"mif1heic"
    ispe = (20).to_bytes(4, "big") + b"ispe" + bytes(4) + width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return ftyp + b"\x00\x00\x00\x10meta" + bytes(8) + ispe + bytes(64)


def test_heic_is_accepted_with_its_size(cli, emulator, workdir: Path):
    path = workdir / "photo.heic"
    path.write_bytes(_heic(1200, 900))
    data = _chat_json(cli, route_env(emulator()), "--image", str(path))
    assert data["media"][0]["mime"] == "image/heic" and (data["media"][0]["width"], data["media"][0]["height"]) == (
        1200, 900)
    assert "I received image 1: HEIC 1200x900" in data["answer"]
    (workdir / "big.heic").write_bytes(_heic(8000, 6000))
    refused = cli("chat", "x", "--image", str(workdir / "big.heic"), "--fit", env=route_env(emulator()))
    assert refused.code == 2 and "convert it to JPEG first" in refused.stderr
