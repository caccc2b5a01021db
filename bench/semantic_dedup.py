"""Semantic dedup, measured: on the shared sample, the documents it removes beyond what exact and MinHash
dedup remove, with the pairs side by side for a person to judge the threshold; then, on a generated corpus
(bench/scale_corpus.py, under /tmp), the documents per second of fitting, embedding and pairing, one core,
the documents each pairs task holds, and k-means with SciPy against faiss.

    .venv/bin/python -m bench.semantic_dedup [DOCS] [PAIRS_SHOWN]
    .venv/bin/python -m bench.semantic_dedup --model MODEL.bin [PAIRS_SHOWN]   # a fastText model's vectors
"""

from __future__ import annotations

import gzip
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.corpus import SAMPLE
from bench.scale_corpus import write_corpus
from tasks.dedup.steps import dedup_tables
from tasks.text.dedup import TextDedupSettings
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.text import semantic, semantic_steps
from tasks.text.fasttext_vectors import FastTextVectors
from tasks.text.semantic import SemanticDedupSettings, duplicates, train

CORPUS = Path("/tmp/curate-bench/semantic")
SHARD = 10_000


def beyond_minhash(shown: int, model: str | None = None) -> None:
    """With `model` (a fastText .bin), its sentence vectors instead of LSA fitted on the sample."""
    texts = [json.loads(line)["text"] for line in gzip.open(SAMPLE, "rt", encoding="utf-8")]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    ((kept, removed, _),), _, _ = dedup_tables([table], TextDedupSettings())
    settings = SemanticDedupSettings(enabled=True)
    column = kept["text"].combine_chunks()
    started = time.perf_counter()
    embedder = FastTextVectors(model) if model else train(column, settings)
    vectors = embedder.embed(column)
    seconds = time.perf_counter() - started
    found = duplicates(vectors, np.zeros(kept.num_rows), settings)
    print(f"shared sample: {len(texts):,} documents; exact + MinHash remove {removed.num_rows}; semantic dedup at "
          f"cosine >= {settings.threshold} with {model or 'LSA'} removes {len(found['removed'])} more "
          f"(fit and embed {seconds:.1f} s, {kept.num_rows / seconds:,.0f} docs/s)")
    rows = kept["text"].to_pylist()
    for i in np.random.default_rng(1).permutation(len(found["removed"]))[:shown]:
        print(f"--- cosine {found['cosine'][i]:.4f}\n  kept:    {rows[found['kept'][i]][:150]!r}\n"
              f"  removed: {rows[found['removed'][i]][:150]!r}")


def throughput(docs: int) -> None:
    """The flow's steps in this process over shards of 10,000 documents: fit, embed per shard, pairs per task."""
    write_corpus(CORPUS, docs, files=4)
    store, paths = Store(str(CORPUS / "store")), RunPaths("bench")
    shards = []
    for path in sorted((CORPUS / "docs").glob("*.jsonl")):  # a shard at a time: the peak memory is the steps'
        with open(path, encoding="utf-8") as lines:
            while chunk := [json.loads(line)["text"] for line in itertools.islice(lines, SHARD)]:
                shards.append(f"part-{len(shards):05d}.parquet")
                store.write_table(pa.table({"id": [f"{len(shards)}-{j}" for j in range(len(chunk))], "text": chunk}),
                                  *paths.stage("dedup", shards[-1]))
    settings = SemanticDedupSettings(enabled=True)
    started = time.perf_counter()
    fitted = semantic_steps.fit(store, [paths.stage("dedup", s) for s in shards], [], settings, "bench", None)
    fit = time.perf_counter()
    for source, shard in enumerate(shards):
        semantic_steps.embed(store, paths, "dedup", shard, source, fitted, "first", "quality_score")
    embedded = time.perf_counter()
    found = semantic_steps.merge([semantic_steps.pairs(store, paths, shards, 0, task, fitted.embedder.dims,
                                                       settings.threshold) for task in range(fitted.tasks)])
    paired = time.perf_counter()
    per_task = np.bincount(np.concatenate([store.read_table(*paths.work("semantic", s), columns=["task"])["task"]
                                           .to_numpy() for s in shards]), minlength=fitted.tasks)
    print(f"{docs:,} generated documents in {len(shards)} shards: fit the embedding and {len(fitted.centroids)} "
          f"centroids on {min(docs, settings.sample):,} in {fit - started:.1f} s; embed and assign "
          f"{docs / (embedded - fit):,.0f} docs/s; pairs {docs / (paired - embedded):,.0f} docs/s in "
          f"{fitted.tasks} tasks of at most {per_task.max():,} documents "
          f"({per_task.max() * fitted.embedder.dims * 4 / 2**20:.0f} MiB of vectors); "
          f"removed {sum(len(r) for r, _, _ in found.values()):,}")
    texts, _ = semantic_steps.first_texts(store, [paths.stage("dedup", s) for s in shards], -(-settings.sample // len(shards)))
    kmeans_backends(fitted.embedder.embed(texts), len(fitted.centroids))


def kmeans_backends(sample: np.ndarray, k: int) -> None:
    """SciPy's kmeans2 (what curate uses) against faiss's k-means when faiss is importable (it is not a
    dependency: `pip install --target /tmp/faiss faiss-cpu` and PYTHONPATH=/tmp/faiss), 10 iterations each."""
    started = time.perf_counter()
    centroids = semantic.centroids(sample, k, 0)
    scipy_s = time.perf_counter() - started
    def inertia(c: np.ndarray) -> float:  # mean squared distance to the nearest centroid, by matrix products
        return float(np.mean(np.min((sample ** 2).sum(1)[:, None] - 2 * sample @ c.T + (c ** 2).sum(1)[None], axis=1)))

    print(f"k-means, {len(sample):,} x {sample.shape[1]} to {k} clusters: SciPy kmeans2 {scipy_s:.2f} s "
          f"(mean squared distance {inertia(centroids):.4f})", end="")
    try:
        import faiss
    except ImportError:
        print("; faiss not importable")
        return
    started = time.perf_counter()
    model = faiss.Kmeans(sample.shape[1], k, niter=10, seed=1)
    model.train(np.ascontiguousarray(sample, dtype=np.float32))
    print(f"; faiss {time.perf_counter() - started:.2f} s (mean squared distance {inertia(model.centroids):.4f})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--model":  # pairs beyond MinHash with a fastText model's vectors
        beyond_minhash(int(sys.argv[3]) if len(sys.argv) > 3 else 12, sys.argv[2])
    else:
        beyond_minhash(int(sys.argv[2]) if len(sys.argv) > 2 else 12)
        throughput(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
