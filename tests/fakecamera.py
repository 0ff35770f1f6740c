"""A QR code as a Y4M video file, for Chromium's fake camera (``--use-file-for-fake-video-capture``).

Black and white only, so the luma plane is the picture and both chroma planes are flat
grey: no colour conversion is needed. Chromium loops the file.
"""

from __future__ import annotations

from pathlib import Path

import segno

WIDTH, HEIGHT = 640, 480


def qr_y4m(text: str, path: Path, frames: int = 4) -> Path:
    matrix = segno.make(text, error="m").matrix
    size = len(matrix) + 8  # four modules of quiet zone each side
    scale = min(WIDTH, HEIGHT) * 9 // 10 // size
    left, top = (WIDTH - size * scale) // 2, (HEIGHT - size * scale) // 2
    luma = bytearray([235]) * (WIDTH * HEIGHT)
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if not dark:
                continue
            y0, x0 = top + (r + 4) * scale, left + (c + 4) * scale
            for y in range(y0, y0 + scale):
                luma[y * WIDTH + x0:y * WIDTH + x0 + scale] = bytes([16]) * scale
    chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n")
            fh.write(luma)
            fh.write(chroma)
            fh.write(chroma)
    return path
