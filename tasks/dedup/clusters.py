"""From band keys to clusters: candidate pairs per band, connected components, one representative each.

Documents are named by a global key `shard << 32 | row`, so "first seen" is simply the smallest key and the
result does not depend on how work was spread over workers.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def doc_keys(shard: int, n_rows: int) -> np.ndarray:
    return (np.int64(shard) << np.int64(32)) + np.arange(n_rows, dtype=np.int64)


def group_edges(docs: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (doc, first doc with the same key) for every document that shares a key with an earlier one."""
    order = np.lexsort((docs, keys))
    k, d = keys[order], docs[order]
    start = np.r_[True, k[1:] != k[:-1]] if len(k) else np.zeros(0, dtype=bool)
    first = np.maximum.accumulate(np.where(start, np.arange(len(k)), 0))
    return d[~start], d[first][~start]


def clusters(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every document on an edge: its cluster representative (smallest key) and the cluster size."""
    if len(u) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    nodes, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (inv[: len(u)], inv[len(u):])), shape=(len(nodes),) * 2)
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)  # nodes are sorted: a label's first node is its smallest
    rep_of = np.empty(labels.max() + 1, dtype=np.int64)
    rep_of[labels[first]] = nodes[first]
    return nodes, rep_of[labels], np.bincount(labels)[labels]
