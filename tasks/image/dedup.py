"""The image sketch: the exact key is the hash of the normalised pixels (so a lossless re-encode, a copy
under another name or format, matches), near-duplicate keys are bands of the 64-bit pHash, and a candidate
pair is verified by the Hamming distance of the two hashes.

Bands sample `band_bits` of the 64 hash bits each (positions drawn once from `seed`): two hashes at
distance d share a band with probability (1 - d/64)^band_bits, so with the defaults (32 bands of 16 bits)
a pair at d = 8 is a candidate with probability 1 - (1 - 0.875^16)^32 = 0.98, at d = 4 with 0.99999.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from tasks.dedup import DedupSettings, Sketch, bit_sampling_keys
from tasks.image.phash import hamming

class ImageDedupSettings(DedupSettings):
    bands: int = Field(32, ge=1, le=256, description="pHash bands (LSH tables)")
    band_bits: int = Field(16, ge=1, le=64, description="hash bits sampled by each band")
    max_distance: int = Field(8, ge=0, le=64, description="near-duplicates differ in at most this many pHash bits")
    seed: int = Field(1, ge=0, description="seed of the bit sampling of the LSH bands")
    keep: Literal["largest", "first", "quality"] = Field(
        "largest", description="which picture of a cluster stays: the most pixels, the first seen, or the highest "
                               "quality_column")
    quality_column: str = Field("laplacian_var", description="numeric column ranking pictures when keep is 'quality'")

    def columns(self) -> list[str]:
        return ["phash", "pixel_hash", "width", "height"]

    def near_bands(self) -> int:
        return self.bands

    def sketch(self, table: pa.Table) -> Sketch:
        n = table.num_rows
        hashes = np.frombuffer(table["phash"].combine_chunks().buffers()[1], dtype=np.uint8)[:8 * n].reshape(n, 8) \
            if n else np.zeros((0, 8), dtype=np.uint8)
        near = bit_sampling_keys(np.unpackbits(hashes, axis=1), self.bands, self.band_bits, self.seed)
        pixel = table["pixel_hash"].combine_chunks()
        content = np.frombuffer(pixel.buffers()[1], dtype=np.uint64)[:2 * n].reshape(n, 2) if n \
            else np.zeros((0, 2), dtype=np.uint64)
        size = np.asarray(table["width"], dtype=np.int64) * np.asarray(table["height"], dtype=np.int64)
        return Sketch(content=content, near=near, has_near=np.ones(n, dtype=bool), signature=hashes, size=size)

    def similar(self, sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
        return hamming(sig_u, sig_v) <= self.max_distance

    def sketch_params(self) -> dict:
        return {"sketch": "phash", "bands": self.bands, "band_bits": self.band_bits, "seed": self.seed}
