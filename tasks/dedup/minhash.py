"""MinHash signatures and LSH band keys for a batch of texts, vectorised over all shingles at once.

The MinHash model is datasketch's: its "affine32" permutations (MurmurHash3 pre-mix, then a*h+b in
uint32) seeded as `datasketch.MinHash(num_perm, seed)` seeds them, and LSH bands/rows as
`datasketch.MinHashLSH` chooses them for a threshold. What datasketch does with a Python call per shingle
(`update_batch`) is done here as NumPy array arithmetic over every shingle of the batch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH
from datasketch.minhash import _fmix

from tasks.preprocess.text import flatten

MIX = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime: combines word hashes into n-gram hashes
BLOCK_SHINGLES = 1 << 16        # shingles per (shingles x num_perm) block: bounds memory at 32 MB for 128 perms
WORD_SPLIT = r"[^\pL\pN]+"      # words for similarity: letters and digits, punctuation dropped


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that datasketch's MinHashLSH picks for this threshold (equal weight to FP and FN)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def similarity_words(texts) -> tuple[pa.Array, np.ndarray]:
    """Lower-cased words without punctuation, and the document each belongs to."""
    words, parent = flatten(pc.split_pattern_regex(pc.utf8_lower(texts), WORD_SPLIT))
    keep = np.asarray(pc.not_equal(words, ""), dtype=bool)
    return words.filter(pa.array(keep)), parent[keep]


def word_hashes(words: pa.Array) -> np.ndarray:
    """A stable 64-bit hash per word: each distinct word is hashed once (SipHash via pandas)."""
    encoded = pc.dictionary_encode(words)
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    return pd.util.hash_array(distinct, categorize=False)[np.asarray(encoded.indices)]


def shingle_hashes(texts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of each document's word n-grams, and the document of each.

    A document shorter than n words has one shingle: all of its words. A document without words has none.
    """
    n_docs = len(texts)
    words, parent = similarity_words(texts)
    w = word_hashes(words)
    m = len(w)
    counts = np.bincount(parent, minlength=n_docs)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    h = np.zeros(m, dtype=np.uint64)
    short_hashes, short_docs = [], []
    with np.errstate(over="ignore"):
        for j in range(n):
            h[: m - j] = h[: m - j] * MIX + w[j:]
            short = np.flatnonzero(counts == j + 1)
            if j + 1 < n and len(short):
                short_hashes.append(h[starts[short]].copy())
                short_docs.append(short)
    valid = np.zeros(m, dtype=bool)
    if m >= n:
        valid[: m - n + 1] = parent[: m - n + 1] == parent[n - 1:]
    hashes = np.concatenate([h[valid], *short_hashes])
    docs = np.concatenate([parent[valid], *short_docs]).astype(np.int64)
    order = np.argsort(docs, kind="stable")
    hv = (hashes[order] >> np.uint64(32)) ^ (hashes[order] & np.uint64(0xFFFFFFFF))
    return hv.astype(np.uint32), docs[order]


def signatures(texts, num_perm: int, ngram: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_docs x num_perm) uint32 MinHash signatures, and a mask of documents that have any shingle."""
    n_docs = len(texts)
    hv, docs = shingle_hashes(texts, ngram)
    a, b = permutations(num_perm, seed)
    sig = np.full((n_docs, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    has = np.bincount(docs, minlength=n_docs) > 0
    if len(hv) == 0:
        return sig, has
    hv = _fmix(hv, 32)
    bounds = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])  # first shingle of each document with shingles
    pos = 0
    while pos < len(bounds):
        # a block of whole documents, about BLOCK_SHINGLES shingles (at least one document)
        end = max(pos + 1, int(np.searchsorted(bounds, bounds[pos] + BLOCK_SHINGLES, side="right")) - 1)
        end = min(end, len(bounds))
        lo, hi = bounds[pos], bounds[end] if end < len(bounds) else len(hv)
        with np.errstate(over="ignore"):
            phv = hv[lo:hi, None] * a + b
        sig[docs[bounds[pos:end]]] = np.minimum.reduceat(phv, bounds[pos:end] - lo, axis=0)
        pos = end
    return sig, has


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs x bands) 64-bit keys: documents equal on all `rows` values of a band share its key."""
    keys = np.zeros((sig.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            k = np.full(sig.shape[0], np.uint64(band), dtype=np.uint64)
            for col in sig[:, band * rows:(band + 1) * rows].T:
                k = (k ^ col.astype(np.uint64)) * MIX
            keys[:, band] = _fmix(k, 64)
    return keys


def content_hashes(texts) -> list[str]:
    """128-bit hex hash of the text with case and whitespace normalised: equal hashes, exact duplicates."""
    norm = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), r"\s+", " "))
    values = norm.to_numpy(zero_copy_only=False).astype(object)
    h1 = pd.util.hash_array(values, hash_key="curate-content-1", categorize=False)
    h2 = pd.util.hash_array(values, hash_key="curate-content-2", categorize=False)
    return [f"{x:016x}{y:016x}" for x, y in zip(h1.tolist(), h2.tolist())]
