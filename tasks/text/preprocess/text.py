"""Vectorised views of a text column: lines, words and per-document aggregates, all in Arrow/NumPy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The values of a list array and, for each, the index of the document it belongs to."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    return pc.list_flatten(lists), np.asarray(pc.list_parent_indices(lists))


def split_lines(texts) -> tuple[pa.Array, np.ndarray]:
    return flatten(pc.split_pattern(texts, "\n"))


def split_words(texts) -> tuple[pa.Array, np.ndarray]:
    return flatten(pc.utf8_split_whitespace(texts))


def per_doc_sum(parent: np.ndarray, values, n_docs: int) -> np.ndarray:
    """Sum of `values` (or count, for a bool array) over each document's elements."""
    return np.bincount(parent, weights=np.asarray(values, dtype=np.float64), minlength=n_docs)


def per_doc_count(parent: np.ndarray, n_docs: int) -> np.ndarray:
    return np.bincount(parent, minlength=n_docs).astype(np.float64)


def per_doc_max(parent: np.ndarray, values, n_docs: int) -> np.ndarray:
    out = np.zeros(n_docs, dtype=np.float64)
    np.maximum.at(out, parent, np.asarray(values, dtype=np.float64))
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def token_ids(values: pa.Array) -> np.ndarray:
    """A dense integer id per distinct string (equal strings, equal ids) within this batch."""
    encoded = pc.dictionary_encode(values)
    return np.asarray(encoded.indices, dtype=np.int64)


def repeated(parent: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """True for an element whose id already occurred earlier in the same document."""
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    key = parent.astype(np.int64) * (int(ids.max()) + 1) + ids
    return pd.Series(key).duplicated().to_numpy()


def _drop_singletons(codes: np.ndarray) -> np.ndarray:
    counts = np.bincount(codes[codes >= 0])
    single = codes >= 0
    single[single] = counts[codes[single]] == 1
    codes[single] = -1
    return codes


def repeated_ngram_codes(word_ids: np.ndarray, parent: np.ndarray, max_n: int) -> dict[int, np.ndarray]:
    """For n = 1..max_n, the id of the word n-gram starting at each position, unique per document.

    -1 marks an n-gram that runs past its document or occurs once in it. An n-gram that occurs once
    makes every longer one starting there unique too, so each size only extends the repeated prefixes
    of the size before: beyond 3-grams almost nothing is left to look at.
    """
    m = len(word_ids)
    if m == 0:
        return {n: np.zeros(0, dtype=np.int64) for n in range(1, max_n + 1)}
    words = _drop_singletons(pd.factorize(parent.astype(np.int64) * (int(word_ids.max()) + 1) + word_ids)[0])
    out = {1: words}
    width = int(words.max()) + 1
    for n in range(2, max_n + 1):
        codes = np.full(m, -1, dtype=np.int64)
        k = m - n + 1
        if k > 0:
            head, tail = out[n - 1][:k], words[n - 1:]
            valid = (head >= 0) & (tail >= 0) & (parent[:k] == parent[n - 1:])
            codes[:k][valid] = pd.factorize(head[valid] * width + tail[valid])[0]
        out[n] = _drop_singletons(codes)
    return out


def first_occurrences(codes: np.ndarray) -> np.ndarray:
    """True where a code (>= 0) appears for the first time; codes must be numbered in order of appearance."""
    seen_max = np.maximum.accumulate(codes)
    first = codes >= 0
    first[1:] &= codes[1:] > seen_max[:-1]
    return first


def text_lengths(texts) -> np.ndarray:
    return np.asarray(pc.utf8_length(texts), dtype=np.float64)
