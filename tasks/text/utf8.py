"""Building blocks of the compiled text kernels: the UTF-8 bytes of an Arrow string column, code point
decoding and 64-bit hashing.

Kernels walk a column's data buffer and offsets directly (no Python string per text); Arrow has
validated the UTF-8, so decoding needs no error handling.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
from numba import njit

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)

# The code points Arrow's utf8_split_whitespace splits at (tests/test_preprocess.py checks all of them).
WHITESPACE = (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680,
              *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)


def buffers(texts) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, int64 offsets) of a string array, zero-copy from Arrow where possible."""
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    arr = arr.cast(pa.large_string())
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    return data, offsets


def code_point_table(code_points) -> np.ndarray:
    """1 for each of `code_points`, else 0, indexed by code point."""
    table = np.zeros(0x110000, dtype=np.uint8)
    table[list(code_points)] = 1
    return table


@lru_cache(maxsize=1)
def every_character() -> pa.Array:
    """Every code point as a one-character string, at its own index, so an Arrow function over it gives a
    kernel a table of exactly Arrow's answer (surrogates, which UTF-8 text never holds, stand as U+FFFD)."""
    cps = np.arange(0x110000)
    cps[0xD800:0xE000] = 0xFFFD
    data = "".join(map(chr, cps.tolist())).encode("utf-8")
    offsets = np.zeros(len(cps) + 1, dtype=np.int64)
    np.cumsum(1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000), out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(cps), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def code_points_of(chars: pa.Array) -> np.ndarray:
    """The code points of a string array whose strings are one character each."""
    data, offsets = buffers(chars)
    points = np.frombuffer(data[:offsets[-1]].tobytes().decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
    if len(points) != len(chars):
        raise ValueError("a string of more or less than one character")
    return points.astype(np.int64)


@njit(cache=True, nogil=True, inline="always")
def decode(data, pos):
    """(code point, byte length) of the character starting at data[pos]."""
    lead = data[pos]
    if lead < 0x80:
        return np.int64(lead), 1
    if lead >= 0xF0:
        return (((np.int64(lead) & 0x07) << 18) | ((np.int64(data[pos + 1]) & 0x3F) << 12)
                | ((np.int64(data[pos + 2]) & 0x3F) << 6) | (np.int64(data[pos + 3]) & 0x3F)), 4
    if lead >= 0xE0:
        return (((np.int64(lead) & 0x0F) << 12) | ((np.int64(data[pos + 1]) & 0x3F) << 6)
                | (np.int64(data[pos + 2]) & 0x3F)), 3
    return ((np.int64(lead) & 0x1F) << 6) | (np.int64(data[pos + 1]) & 0x3F), 2


@njit(cache=True, nogil=True)
def fmix64(h):
    """MurmurHash3's finaliser: spreads every input bit over the whole hash (FNV-1a leaves low bits weak)."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@njit(cache=True, nogil=True)
def hash_bytes(data, start, end):
    """A 64-bit hash of data[start:end] (FNV-1a, then fmix64)."""
    h = FNV_OFFSET
    for k in range(start, end):
        h = (h ^ np.uint64(data[k])) * FNV_PRIME
    return fmix64(h)


@njit(cache=True, nogil=True)
def same_bytes(data, s1, e1, s2, e2):
    if e1 - s1 != e2 - s2:
        return False
    for k in range(e1 - s1):
        if data[s1 + k] != data[s2 + k]:
            return False
    return True
