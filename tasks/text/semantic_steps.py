"""The semantic dedup steps over storage, so that no task holds more than a share of the vectors:

    fit        the embedding (or the published one) and k-means centroids, on a sample of every source
    embed      per shard: its vectors, each to its nearest centroid, in row groups by pairs task
    assign     per published vector file: the same, its documents preferred to any of this run
    pairs      per pairs task: its clusters' documents from every source, SemDeDup's rule inside each cluster
    remove     per shard: drop its duplicates, keep the vectors of the rest in the version's index

A cluster goes to pairs task `cluster % tasks`, with `tasks = ceil(documents / pairs_task_rows)`, so a
pairs task holds about `pairs_task_rows` vectors, whatever the corpus's size. A source is a published
vector file (oldest first) or a shard of this run; a document's order is (source, row): first seen first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.dedup.steps import write_stage_outputs
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.records import StageCounts
from tasks.text import semantic, semantic_index
from tasks.text.fasttext_vectors import FastTextVectors
from tasks.text.semantic import Embedder, SemanticDedupSettings

PARTS = pa.schema([("task", pa.int32()), ("cluster", pa.int32()), ("order", pa.int64()), ("id", pa.string()),
                   ("preference", pa.float64()), ("vector", pa.binary())])


@dataclass
class Fitted:
    embedder: Embedder | FastTextVectors
    centroids: np.ndarray  # (clusters, dims) float32
    tasks: int             # pairs tasks the clusters are spread over
    documents: int         # of this run
    published: int         # published documents matched against


def fit(store: Store, inputs: list[tuple[str, ...]], published: list[tuple[str, ...]], settings: SemanticDedupSettings,
        version: str, reuse: str | None) -> Fitted:
    """The fastText model of `settings.model`, the embedding of version `reuse` from the index, or one fitted
    on the first documents of every shard (kept in this version's index); then the centroids, on those
    documents' vectors and a random share of every published file's, up to `settings.sample` in all."""
    per_source = -(-settings.sample // max(1, len(inputs) + len(published)))
    texts, documents = first_texts(store, inputs, per_source)
    if settings.model:
        embedder = FastTextVectors(settings.model)
    elif reuse:
        embedder = semantic_index.read_embedder(store, reuse)
    else:
        embedder = semantic.train(texts, settings)
        semantic_index.write_embedder(store, version, embedder)
    rng = np.random.default_rng(settings.seed)
    sample, old = [embedder.embed(texts)], 0
    for parts in published:
        vectors = semantic_index.read_vectors(store, parts)[1]
        sample.append(vectors[rng.permutation(len(vectors))[:per_source]])
        old += len(vectors)
    sample = np.concatenate(sample)
    k = semantic.clusters(documents + old, settings, len(sample))
    centroids = semantic.centroids(sample, k, settings.seed) if len(sample) else np.zeros((1, embedder.dims))
    return Fitted(embedder, centroids, math.ceil((documents + old) / settings.pairs_task_rows) or 1, documents, old)


def first_texts(store: Store, inputs: list[tuple[str, ...]], per_source: int) -> tuple[pa.Array, int]:
    """The first `per_source` texts of every shard (all that is read of it), and how many documents the
    shards hold."""
    heads = [store.read_head(*parts, columns=["text"], rows=per_source) for parts in inputs]
    return (pa.concat_arrays([head["text"].combine_chunks() for head, _ in heads]) if heads else pa.array([], pa.string()),
            sum(rows for _, rows in heads))


def _parts(ids: np.ndarray, vectors: np.ndarray, preference: np.ndarray, source: int, fitted: Fitted) -> list[pa.Table]:
    """The rows of one source, a table per pairs task its clusters go to."""
    cluster = semantic.nearest(vectors, fitted.centroids) if len(vectors) else np.zeros(0, np.int32)
    table = pa.table({"task": cluster % fitted.tasks, "cluster": cluster,
                      "order": (np.int64(source) << 32) + np.arange(len(ids), dtype=np.int64),
                      "id": pa.array(ids, pa.string()), "preference": preference.astype(np.float64),
                      "vector": _pack(vectors)}, schema=PARTS).sort_by("task")
    tasks = table["task"].to_numpy()
    bounds = np.flatnonzero(np.diff(tasks)) + 1
    return [table.slice(a, b - a) for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(tasks)])] or [table]


def _pack(vectors: np.ndarray) -> pa.Array:
    """Each vector as float16 bytes: half the memory and storage of float32, far finer than any threshold."""
    raw = np.ascontiguousarray(vectors, dtype=np.float16)
    width = raw.shape[1] * 2 if raw.ndim == 2 else 0
    offsets = np.arange(len(raw) + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(pa.binary(), len(raw), [None, pa.py_buffer(offsets), pa.py_buffer(raw.tobytes())])


def _unpack(column: pa.ChunkedArray, dims: int) -> np.ndarray:
    array = column.combine_chunks()
    if len(array) == 0:
        return np.zeros((0, dims), np.float32)
    start = int(np.frombuffer(array.buffers()[1], np.int32, count=1, offset=array.offset * 4)[0])
    data = np.frombuffer(array.buffers()[2], np.float16, count=len(array) * dims, offset=start)
    vectors = data.reshape(len(array), dims).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # of length 1 again: float16 rounding left 1 +- 1e-3
    return vectors / np.where(norms > 0, norms, 1)


def embed(store: Store, paths: RunPaths, stage: str, shard: str, source: int, fitted: Fitted, keep: str,
          quality_column: str) -> int:
    """Embed the shard's documents and write them by pairs task; returns its documents."""
    table = store.read_present(*paths.stage(stage, shard), columns=["id", "text", quality_column])
    preference = {"first": lambda: np.zeros(table.num_rows),
                  "longest": lambda: np.asarray(pc.utf8_length(table["text"]), dtype=np.float64),
                  "quality": lambda: (np.asarray(table[quality_column].cast(pa.float64()).fill_null(-np.inf))
                                      if quality_column in table.column_names else np.zeros(table.num_rows))}[keep]()
    vectors = fitted.embedder.embed(table["text"].combine_chunks())
    store.write_row_groups(_parts(table["id"].to_numpy(zero_copy_only=False), vectors, preference, source, fitted),
                           *paths.work("semantic", shard))
    return table.num_rows


def assign(store: Store, paths: RunPaths, parts: tuple[str, ...], source: int, fitted: Fitted) -> int:
    """A published vector file by pairs task, its documents preferred to any of the run (never removed)."""
    ids, vectors = semantic_index.read_vectors(store, parts)
    store.write_row_groups(_parts(ids, vectors, np.full(len(ids), np.inf), source, fitted),
                           *_published_file(paths, source))
    return len(ids)


def _published_file(paths: RunPaths, source: int) -> tuple[str, ...]:
    return paths.work("semantic", f"published-{source:05d}.parquet")


def source_files(paths: RunPaths, shards: list[str], published: int) -> list[tuple[str, ...]]:
    return [_published_file(paths, i) for i in range(published)] + [paths.work("semantic", s) for s in shards]


def pairs(store: Store, paths: RunPaths, shards: list[str], published: int, task: int, dims: int,
          threshold: float) -> dict[str, tuple[list[int], list[str], list[float]]]:
    """{shard: (rows removed, the ids they duplicate, the cosines)} of pairs task `task`'s clusters."""
    table = pa.concat_tables([store.read_table(*parts, filters=[("task", "=", task)])
                              for parts in source_files(paths, shards, published)]).sort_by("order")
    vectors = _unpack(table["vector"], dims)
    removed, kept, cosine = semantic.cluster_pairs(vectors, table["preference"].to_numpy(),
                                                   table["cluster"].to_numpy(), threshold)
    order, ids = table["order"].to_numpy()[removed], table["id"].to_numpy(zero_copy_only=False)[kept]
    source, row = order >> 32, order & 0xFFFFFFFF
    ours = source >= published  # a published document is never removed
    return {shards[s - published]: (row[ours & (source == s)].tolist(), ids[ours & (source == s)].tolist(),
                                    cosine[ours & (source == s)].tolist()) for s in np.unique(source[ours])}


def merge(found: list[dict]) -> dict[str, tuple[list[int], list[str], list[float]]]:
    """The pairs tasks' findings, by shard."""
    merged: dict[str, tuple[list, list, list]] = {}
    for part in found:
        for shard, columns in part.items():
            for into, values in zip(merged.setdefault(shard, ([], [], [])), columns):
                into.extend(values)
    return merged


def remove(store: Store, paths: RunPaths, stage: str, shard: str, found: tuple[list[int], list[str], list[float]],
           version: str, dims: int) -> StageCounts:
    """Drop the shard's duplicates (`found`: rows, the ids they duplicate, cosines); the vectors of the rest go
    to the version's index."""
    rows, kept_ids, cosines = found
    table = store.read_table(*paths.stage(stage, shard))
    kept, rejected = semantic.removed(table, rows, kept_ids, cosines)
    write_stage_outputs(store, paths, "semantic", shard, kept, rejected)
    parts = store.read_table(*paths.work("semantic", shard), columns=["order", "id", "vector"])
    parts = parts.sort_by("order").filter(~np.isin(np.arange(parts.num_rows), rows))
    semantic_index.write_vectors(store, version, shard, parts["id"].to_pylist(), _unpack(parts["vector"], dims))
    return StageCounts.of(table.num_rows, kept, rejected)
