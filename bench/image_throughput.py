"""Images per second per core on the shared real pictures: decode alone (the limit) against the whole
per-shard image work of preprocess (rules, one decode, signals) plus the dedup sketch. One process, no
orchestrator, so the figures are per core.

    .venv/bin/python bench/image_throughput.py [ROUNDS] [--profile]
"""

from __future__ import annotations

import io
import sys

from media import SHARED, profile, records, timed
from PIL import Image

from tasks.dedup import sketch_shard
from tasks.image import IMAGE
from tasks.image.dedup import ImageDedupSettings
from tasks.image import decode as image_decode, phash
from tasks.image.preprocess import ImagePreprocessSettings, laplacian_variance, preprocess, signals

IMAGES = SHARED / "images"


def main(rounds: int) -> None:
    table = records(IMAGE, IMAGES)
    n, megapixels = table.num_rows, sum(w * h for w, h in zip(table["width"].to_pylist(), table["height"].to_pylist())) / 1e6
    blobs = [im["bytes"] for im in table["image"].to_pylist()]
    # every rule on every picture: no rule drops a row before the decode
    settings = ImagePreprocessSettings(min_side={"enabled": False}, aspect_ratio={"enabled": False},
                                       blank={"enabled": False}, blur={"enabled": False})
    dedup = ImageDedupSettings()

    def decode_only():
        for data in blobs:
            Image.open(io.BytesIO(data)).load()

    def preprocess_and_sketch():
        kept, _ = preprocess(table, settings)
        sketch_shard(kept, dedup)

    print(f"{n} pictures, {megapixels:.1f} megapixels, {sum(map(len, blobs)) / 1e6:.1f} MB; {rounds} rounds, one core")
    decode = timed(decode_only, rounds)
    whole = timed(preprocess_and_sketch, rounds)
    print(f"{'decode alone':<28}{decode:8.2f} s{n / decode:10.1f} images/s{megapixels / decode:8.1f} Mpx/s")
    print(f"{'preprocess + dedup sketch':<28}{whole:8.2f} s{n / whole:10.1f} images/s{megapixels / whole:8.1f} Mpx/s")
    print(f"ratio (whole / decode time): {whole / decode:.2f}")
    if "--profile" in sys.argv:
        profile(preprocess_and_sketch, rounds, [signals, image_decode.normalised, image_decode.in_srgb,
                                                image_decode.to_8bit, laplacian_variance, phash.phash,
                                                ImageDedupSettings.sketch])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 3)
