"""Vectorised views of a text column: lines and per-document aggregates, all in Arrow/NumPy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The values of a list array and, for each, the index of the document it belongs to."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    return pc.list_flatten(lists), np.asarray(pc.list_parent_indices(lists))


def split_lines(texts) -> tuple[pa.Array, np.ndarray]:
    return flatten(pc.split_pattern(texts, "\n"))


def per_doc_sum(parent: np.ndarray, values, n_docs: int) -> np.ndarray:
    """Sum of `values` (or count, for a bool array) over each document's elements."""
    return np.bincount(parent, weights=np.asarray(values, dtype=np.float64), minlength=n_docs)


def per_doc_count(parent: np.ndarray, n_docs: int) -> np.ndarray:
    return np.bincount(parent, minlength=n_docs).astype(np.float64)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def text_lengths(texts) -> np.ndarray:
    return np.asarray(pc.utf8_length(texts), dtype=np.float64)
