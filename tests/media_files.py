"""Media the tests make themselves: images in each accepted format, broken files, and short MP4 clips."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path


def image(path: Path, fmt: str, size: tuple[int, int] = (320, 200), color: str = "teal") -> Path:
    from PIL import Image

    Image.new("RGB", size, color).save(path, fmt)
    return path


def video(path: Path, size: tuple[int, int] = (320, 240), frames: int = 12, noise: bool = False) -> Path:
    """An H.264 MP4; with noise the frames are random, so the file is large for its length."""
    import random

    import av
    from PIL import Image

    out = io.BytesIO()
    rng = random.Random(0)
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            if noise:
                picture = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
            else:
                picture = Image.new("RGB", size, ((i * 20) % 255, 80, 160))
            frame = av.VideoFrame.from_image(picture)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    path.write_bytes(out.getvalue())
    return path
