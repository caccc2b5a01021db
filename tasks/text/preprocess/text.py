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


def repeated_ngrams(word_ids: np.ndarray, parent: np.ndarray, max_n: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For n = 1..max_n: (positions, ids) of the word n-grams that occur at least twice in their document.

    Positions ascend; ids are unique per document and numbered in order of first appearance. An n-gram
    that occurs once makes every longer one starting there unique too, so each size only extends the
    repeated n-grams of the size before: the arrays shrink fast, and beyond 3-grams almost nothing is left
    to look at (no pass over every word after the first).
    """
    m = len(word_ids)
    if m == 0:
        return {n: (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)) for n in range(1, max_n + 1)}
    words = pd.factorize(parent.astype(np.int64) * (int(word_ids.max()) + 1) + word_ids)[0]
    out = {1: _repeated(np.arange(m), words)}
    dense = np.full(m, -1, dtype=np.int64)  # word ids, -1 for a word that occurs once in its document
    dense[out[1][0]] = out[1][1]
    width = int(words.max()) + 1
    for n in range(2, max_n + 1):
        pos, head = out[n - 1]
        inside = pos + n - 1 < m
        pos, head = pos[inside], head[inside]
        tail = dense[pos + n - 1]
        valid = (tail >= 0) & (parent[pos] == parent[pos + n - 1])
        out[n] = _repeated(pos[valid], pd.factorize(head[valid] * width + tail[valid])[0])
    return out


def _repeated(pos: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (position, id) pairs whose id occurs at least twice."""
    if len(ids) == 0:
        return pos, ids
    twice = np.bincount(ids)[ids] >= 2
    return pos[twice], ids[twice]


def first_occurrences(ids: np.ndarray) -> np.ndarray:
    """True where an id appears for the first time; ids must be numbered in order of appearance."""
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    seen_max = np.maximum.accumulate(ids)
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] > seen_max[:-1]
    return first


def text_lengths(texts) -> np.ndarray:
    return np.asarray(pc.utf8_length(texts), dtype=np.float64)
