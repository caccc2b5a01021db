"""From band keys to clusters: candidate pairs per band, connected components, one representative each.

Documents are named by a global key `shard << 32 | row`: shards are numbered in corpus order, so the
smallest key is the first seen, whatever the number of workers or the shard size. Documents of published
versions (the dedup index) get negative shard numbers: they come first and always stay.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def doc_keys(shard: int, rows: np.ndarray | int) -> np.ndarray:
    rows = np.arange(rows) if np.isscalar(rows) else rows
    return (np.int64(shard) << np.int64(32)) + np.asarray(rows, dtype=np.int64)


def group_edges(docs: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (doc, first doc with the same key) for every document that shares a key with an earlier one."""
    order = np.lexsort((docs, keys))
    k, d = keys[order], docs[order]
    start = np.r_[True, k[1:] != k[:-1]] if len(k) else np.zeros(0, dtype=bool)
    first = np.maximum.accumulate(np.where(start, np.arange(len(k)), 0))
    return d[~start], d[first][~start]


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted nodes, component label of each) of the graph with edges u-v. Memory follows the edges."""
    nodes, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (inv[: len(u)], inv[len(u):])), shape=(len(nodes),) * 2)
    return nodes, connected_components(graph, directed=False)[1]


def representatives(nodes: np.ndarray, labels: np.ndarray, preference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node: its component's representative and the component's size.

    The representative is a published document if the component has one (the earliest), else the node with
    the highest `preference`, ties to the smallest key (the first seen).
    """
    published = nodes < 0
    order = np.lexsort((nodes, np.where(published, 0, -preference), ~published, labels))
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    rep_of = np.empty(labels.max() + 1 if len(labels) else 0, dtype=np.int64)
    rep_of[labels[order][first]] = nodes[order][first]
    return rep_of[labels], np.bincount(labels)[labels]
