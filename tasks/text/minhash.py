"""MinHash signatures and exact-content hashes of a batch of texts, in one compiled pass over their bytes.

The MinHash model is datasketch's: its "affine32" permutations (MurmurHash3 pre-mix of a 32-bit shingle
hash, then a*h+b in uint32) seeded as `datasketch.MinHash(num_perm, seed)` seeds them, and LSH bands/rows
as `datasketch.MinHashLSH` chooses them for a threshold. datasketch makes a Python call per shingle; here
one Numba kernel walks the UTF-8 bytes of every document once: it finds words, hashes them, rolls them
into n-gram shingles and takes the minimum over all permutations, so the cost is close to reading the text.

Definitions (the reference in tests/test_dedup.py restates them in plain Python):
- word: a maximal run of code points of Unicode category L* or N* in the lower-cased text;
- word hash: FNV-1a 64 over the word's UTF-8 bytes; shingle hash: FNV-1a 64 over the n word hashes
  (each as one 64-bit unit), folded to 32 bits as `high ^ low`. A document with fewer than n words has
  one shingle made of all of them; a document without words has none.
- content hash (exact duplicates): two 64-bit hashes of the lower-cased text with ASCII whitespace runs
  collapsed to one space and trimmed.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numpy as np
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH
from numba import njit

from tasks.text.utf8 import FNV_OFFSET, FNV_PRIME, buffers, decode, fmix64

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MAX_HASH = np.uint32(0xFFFFFFFF)
M32 = np.uint64(0xFFFFFFFF)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) that datasketch's MinHashLSH picks for this threshold and (false positive, false
    negative) weights."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


@lru_cache(maxsize=1)
def word_characters() -> np.ndarray:
    """1 for every code point of Unicode category L* or N* (Python's Unicode database), else 0."""
    return np.fromiter((unicodedata.category(chr(c))[0] in "LN" for c in range(0x110000)),
                       dtype=np.uint8, count=0x110000)


def utf8_buffers(texts) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, int64 offsets) of the lower-cased texts."""
    return buffers(pc.utf8_lower(texts))


@njit(cache=True, nogil=True)
def _fmix32(h):
    # Numba widens uint32 products to uint64: mask back to 32 bits after every multiply
    h = np.uint64(h)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & M32
    return np.uint32(h ^ (h >> np.uint64(16)))


@njit(cache=True, nogil=True)
def _shingle(ring, start, count, n):
    """FNV-1a 64 over the last `count` word hashes of the ring (oldest first), folded to 32 bits."""
    h = FNV_OFFSET
    for i in range(count):
        h = (h ^ ring[(start + i) % n]) * FNV_PRIME
    return np.uint32((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF)))


@njit(cache=True, nogil=True)
def _permute_min(hv, a, b, row):
    x = np.uint64(_fmix32(hv))
    for p in range(a.shape[0]):
        v = np.uint32((a[p] * x + b[p]) & M32)
        if v < row[p]:
            row[p] = v


@njit(cache=True, nogil=True)
def _scan(data, offsets, is_word, n, a, b, sig, shingles, content):
    """Fill sig (docs x perms, preset to MAX_HASH), shingle counts and content hashes (docs x 2)."""
    ring = np.zeros(n, dtype=np.uint64)
    for d in range(offsets.shape[0] - 1):
        pos, end = offsets[d], offsets[d + 1]
        words = 0
        in_word = False
        wh = FNV_OFFSET
        c1, c2 = FNV_OFFSET, GOLDEN
        pending_space, any_text = False, False
        row = sig[d]
        while pos <= end:
            if pos < end:
                cp, size = decode(data, pos)
                word_char = is_word[cp] == 1
            else:
                cp, size, word_char = np.int64(0), 1, False  # the end of the text closes the last word
            if word_char:
                for k in range(size):
                    wh = (wh ^ np.uint64(data[pos + k])) * FNV_PRIME
                in_word = True
            elif in_word:
                ring[words % n] = wh
                words += 1
                if words >= n:
                    _permute_min(_shingle(ring, words - n, n, n), a, b, row)
                    shingles[d] += 1
                wh = FNV_OFFSET
                in_word = False
            if pos < end:  # content hash of the whitespace-normalised text
                if cp == 32 or cp == 9 or cp == 10 or cp == 12 or cp == 13:
                    pending_space = any_text
                else:
                    if pending_space:
                        c1 = (c1 ^ np.uint64(32)) * FNV_PRIME
                        c2 = (c2 + np.uint64(32)) * GOLDEN
                        pending_space = False
                    for k in range(size):
                        c1 = (c1 ^ np.uint64(data[pos + k])) * FNV_PRIME
                        c2 = (c2 + np.uint64(data[pos + k])) * GOLDEN
                    any_text = True
            pos += size
        if 0 < words < n:
            _permute_min(_shingle(ring, 0, words, n), a, b, row)
            shingles[d] = 1
        content[d, 0] = fmix64(c1)
        content[d, 1] = fmix64(c2)


def sketch(texts, num_perm: int, ngram: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(docs x num_perm) uint32 MinHash signatures, shingles per document, and (docs x 2) uint64 content hashes.

    A document without shingles keeps the all-max signature: callers mask it out of the LSH bands.
    """
    data, offsets = utf8_buffers(texts)
    a, b = permutations(num_perm, seed)
    n_docs = len(offsets) - 1
    sig = np.full((n_docs, num_perm), MAX_HASH, dtype=np.uint32)
    shingles = np.zeros(n_docs, dtype=np.int64)
    content = np.zeros((n_docs, 2), dtype=np.uint64)
    _scan(data, offsets, word_characters(), ngram, a, b, sig, shingles, content)
    return sig, shingles, content


@njit(cache=True, nogil=True)
def _band_keys(sig, bands, rows, keys):
    for d in range(sig.shape[0]):
        for band in range(bands):
            k = np.uint64(band) * GOLDEN
            for r in range(band * rows, (band + 1) * rows):
                k = (k ^ np.uint64(sig[d, r])) * FNV_PRIME
            keys[d, band] = fmix64(k)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs x bands) 64-bit keys: documents equal on all `rows` values of a band share its key."""
    keys = np.zeros((sig.shape[0], bands), dtype=np.uint64)
    _band_keys(sig, bands, rows, keys)
    return keys
