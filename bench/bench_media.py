"""Preparing media requests: time and peak memory to read, identify, decode, check and encode a 4K image and a
1080p video into a chat body, per megabyte of input.

Run: python bench/bench_media.py [--repeat 5]
Each case runs in a fresh child process (so peak RSS belongs to that case alone): the child imports everything,
notes its peak RSS, prepares the request `repeat` times, and reports the median time and the peak RSS growth.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

CASES = {
    "4k-png": ("image", "shot.png"),
    "4k-jpeg": ("image", "shot.jpg"),
    "1080p-mp4": ("video", "clip.mp4"),
}


def make_inputs(folder: Path) -> None:
    import av
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (3840, 2160), "#f4f5f7")
    draw = ImageDraw.Draw(picture)
    for i in range(0, 3840, 40):  # a screenshot-like image: lines, boxes and text
        draw.line((i, 0, 3840 - i, 2160), fill=(i % 255, 90, 160), width=2)
        draw.text((i, (i * 7) % 2160), f"row {i}", fill="#111827")
    picture.save(folder / "shot.png")
    picture.save(folder / "shot.jpg", quality=90)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        base = picture.resize((1920, 1080))
        for i in range(96):  # 4 seconds, moving content
            frame = av.VideoFrame.from_image(base.rotate(i * 2, translate=(i * 4, 0)))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    (folder / "clip.mp4").write_bytes(out.getvalue())


def child(case: str, folder: Path, repeat: int) -> None:
    from k2probe.client.media import load_media
    from k2probe.core.profiles import profile_for
    from k2probe.diagnose.chat import chat_request, with_media

    kind, name = CASES[case]
    path = folder / name
    limits = profile_for("kimi-k2.7-code").media
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        media = load_media(path, kind, limits)
        body = with_media(chat_request("kimi-k2.7-code", "Review this."), [media])
        encoded = json.dumps(body).encode()
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"case": case, "bytes": path.stat().st_size, "body_bytes": len(encoded),
                      "median_s": statistics.median(times), "peak_growth_kb": peak - baseline,
                      "size": f"{media.width}x{media.height}"}))


def main(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Inputs are made in a child too: Linux carries a parent's peak RSS into its children, so a
        # parent that had decoded a 4K image would hide the children's peaks.
        subprocess.run([sys.executable, __file__, "--make", tmp], check=True)
        print(f"media request preparation (read, identify, decode, check, base64 + JSON body), median of {repeat}")
        for case in CASES:
            done = subprocess.run([sys.executable, __file__, "--child", case, "--folder", tmp, "--repeat",
                                   str(repeat)], capture_output=True, text=True, check=True)
            r = json.loads(done.stdout)
            mb = r["bytes"] / 1e6
            print(f"{case:>10} {r['size']:>9}: input {mb:6.2f} MB → body {r['body_bytes'] / 1e6:6.2f} MB · "
                  f"{r['median_s'] * 1000:7.1f} ms ({r['median_s'] * 1000 / mb:6.1f} ms/MB) · "
                  f"peak RSS +{r['peak_growth_kb'] / 1024:6.1f} MB ({r['peak_growth_kb'] / 1024 / mb:5.1f} MB per MB)")
    print(f"reproduce: {sys.executable} bench/bench_media.py --repeat {repeat}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child")
    parser.add_argument("--folder")
    parser.add_argument("--make")
    args = parser.parse_args()
    if args.make:
        make_inputs(Path(args.make))
    elif args.child:
        child(args.child, Path(args.folder), args.repeat)
    else:
        main(args.repeat)
