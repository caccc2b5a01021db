"""Broken pictures and converted copies next to real ones, for the image quickstart and the tests.

    python examples/make_image_examples.py SOURCE_DIR OUT_DIR

Writes into OUT_DIR: files that must be quarantined (zero bytes, truncated JPEG and PNG, a PNG with a bad
checksum, HTML and random bytes under picture names) and copies of real pictures from SOURCE_DIR in
formats the shared set lacks (GIF, BMP, HEIC, AVIF, 16-bit PNG), made with the libraries curate reads them
with. Returns {file name: the SOURCE_DIR picture it copies} for the copies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from pillow_heif import register_heif_opener

register_heif_opener()

CONVERSIONS = {  # copy name -> (source picture, format, how)
    "butterfly.gif": ("opencv_butterfly.jpg", "GIF", None),
    "aero1.bmp": ("opencv_aero1.jpg", "BMP", None),
    "coins-16bit.png": ("skimage_coins.png", "PNG", "16bit"),
    "meadow.heic": ("mate_GreenMeadow.jpg", "HEIF", None),
    "pattern.avif": ("opencv_doc_pattern_img.jpg", "AVIF", None),
}
BROKEN = ("empty.jpg", "truncated.jpg", "truncated.png", "bad-crc.png", "page.jpg", "noise.png")


def convert(source: Path, target: Path, fmt: str, how: str | None) -> None:
    image = Image.open(source)
    if how == "16bit":  # 8-bit grey scaled to the full 16-bit range, as scanners and medical images store it
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(grey).save(target, fmt)
    else:
        image.convert("P" if fmt == "GIF" else "RGB").save(target, fmt)


def make_broken(source_dir: Path, out: Path) -> None:
    jpeg = (source_dir / "opencv_butterfly.jpg").read_bytes()
    png = (source_dir / "skimage_page.png").read_bytes()
    (out / "empty.jpg").write_bytes(b"")
    (out / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (out / "truncated.png").write_bytes(png[: len(png) // 2])
    bad = bytearray(png)
    bad[29] ^= 0xFF  # inside the IHDR chunk's CRC
    (out / "bad-crc.png").write_bytes(bytes(bad))
    (out / "page.jpg").write_text("<!doctype html><html><body>404 Not Found</body></html>\n")
    (out / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def make(source_dir: Path, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    make_broken(source_dir, out)
    for name, (picture, fmt, how) in CONVERSIONS.items():
        convert(source_dir / picture, out / name, fmt, how)
    return {name: picture for name, (picture, _, _) in CONVERSIONS.items()}


if __name__ == "__main__":
    print(make(Path(sys.argv[1]), Path(sys.argv[2])))
