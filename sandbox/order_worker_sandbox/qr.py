"""The PNG behind ``/v1/qr``: a real QR code of the pay-in address, 256x256, level M, 2-module quiet zone.

``segno`` builds the module matrix; the PNG is written here (zlib + struct) so the image is exactly
256x256 as documented, which segno's integer scaling cannot guarantee. If segno is missing, a plain
256x256 white PNG stands in (still a valid image); ``qr_available()`` tells which one you get.
"""

from __future__ import annotations

import base64
import struct
import zlib

SIZE = 256
QUIET = 2


def qr_available() -> bool:
    try:
        import segno  # noqa: F401 - optional dependency probe
    except ImportError:  # pragma: no cover - segno is a declared dependency
        return False
    return True


def _matrix(payload: str) -> list[list[bool]]:
    try:
        import segno
    except ImportError:  # pragma: no cover
        return [[False]]
    code = segno.make_qr(payload, error="m", boost_error=False)
    return [[bool(v) for v in row] for row in code.matrix]


def png_bytes(payload: str) -> bytes:
    matrix = _matrix(payload)
    modules = len(matrix) + 2 * QUIET
    rows = []
    for y in range(SIZE):
        my = y * modules // SIZE - QUIET
        line = bytearray(b"\x00")  # filter type 0 per scanline
        for x in range(SIZE):
            mx = x * modules // SIZE - QUIET
            dark = 0 <= my < len(matrix) and 0 <= mx < len(matrix) and matrix[my][mx]
            line.append(0 if dark else 255)
        rows.append(bytes(line))
    raw = b"".join(rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def png_data_url(payload: str) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(payload)).decode("ascii")
