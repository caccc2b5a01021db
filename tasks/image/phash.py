"""The 64-bit perceptual hash (pHash) of a picture and the Hamming distance between two.

pHash as `imagehash.phash` defines it: the grey picture resized to 32x32, its 2-D DCT-II, the top-left
8x8 low frequencies, one bit each for "above their median", packed row by row, most significant bit first.
Resizing, re-encoding and small edits flip few bits; different pictures differ in about half of them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dct

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def phash(image: Image.Image) -> bytes:
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dct(dct(grey, axis=0), axis=1)[:8, :8]
    return np.packbits(low > np.median(low)).tobytes()


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between rows of two (n x 8) uint8 hash matrices."""
    return POPCOUNT[np.bitwise_xor(a, b)].sum(axis=1, dtype=np.int64)
