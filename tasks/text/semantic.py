"""Semantic deduplication, as NeMo Curator's SemDeDup: documents that say the same in other words, which
MinHash (word n-gram overlap) misses.

Embeddings are latent semantic analysis trained on the run's own documents, so nothing is downloaded:
TF-IDF of hashed word unigrams and bigrams (the quality classifier's features, 2^15 buckets) projected on
their top `dims` singular vectors, fitted on a sample of up to `sample` documents, L2-normalised. k-means
(SciPy) groups the embeddings; within each cluster, documents are taken best first by dedup's `keep` rule,
and one whose cosine to a better one is >= `threshold` is a duplicate of the most similar. It runs after exact and MinHash dedup as its
own stage (`semantic`): `train` once, `embed` per shard, `duplicates` over every shard's embeddings, and
`removed` per shard, rule `dedup.semantic` with the document kept and the cosine in the reason.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field
from scipy import sparse
from scipy.cluster.vq import kmeans2
from scipy.sparse.linalg import svds

from tasks.records import Check, Settings, split_by_checks
from tasks.text.preprocess.quality_classifier import features

BUCKETS = 1 << 15
RULE = "dedup.semantic"
BLOCK = 512  # rows of a cluster whose cosines to the better ones are computed at once (at most 2 kB a document)


class SemanticDedupSettings(Settings):
    enabled: bool = False
    threshold: float = Field(0.998, gt=0, le=1, description=(
        "cosine of two embeddings at which they are duplicates (on the shared sample, pairs at 0.998 are "
        "templated near-copies; at 0.99 different texts of one genre pair up)"))
    n_clusters: int | None = Field(None, ge=1, description="k-means clusters; default: the square root of the documents")
    dims: int = Field(128, ge=2, le=256, description="embedding dimensions (singular vectors kept)")
    sample: int = Field(20_000, ge=10, description="documents the embedding and the clusters are fitted on")
    seed: int = 0


@dataclass
class Embedder:
    idf: np.ndarray    # (BUCKETS,) float32
    basis: np.ndarray  # (BUCKETS, dims) float32

    def embed(self, texts: pa.Array) -> np.ndarray:
        """(documents, dims) float32, each of length 1 (0 for a text without words)."""
        vectors = (features(texts, BUCKETS) @ sparse.diags(self.idf)) @ self.basis
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def train(texts: pa.Array, settings: SemanticDedupSettings) -> Embedder:
    x = features(texts, BUCKETS)
    df = np.bincount(x.indices, minlength=BUCKETS)
    idf = (np.log((1 + x.shape[0]) / (1 + df)) + 1).astype(np.float32)
    k = max(1, min(settings.dims, min(x.shape) - 1))
    _, _, vt = svds((x @ sparse.diags(idf)).astype(np.float64), k=k, random_state=settings.seed)
    return Embedder(idf=idf, basis=vt.T.astype(np.float32))


def to_bytes(vectors: np.ndarray, size: np.ndarray, score: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, vectors=vectors.astype(np.float16), size=size, score=score)
    return out.getvalue()


def from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stored = np.load(io.BytesIO(data))
    return stored["vectors"].astype(np.float32), stored["size"], stored["score"]


def duplicates(vectors: np.ndarray, preference: np.ndarray, settings: SemanticDedupSettings) -> dict:
    """{removed: indices, kept: the index each duplicates, cosine: theirs, clusters: k} over every document
    (index = order seen). k-means clusters the vectors; inside a cluster, documents are taken best first
    (highest `preference`, then first seen), and one is removed when its cosine to a better one is at or above
    the threshold, as SemDeDup does: the document it duplicates is its most similar better one, so a chain of
    small steps never joins two documents that are not alike."""
    n = len(vectors)
    found = {"removed": [], "kept": [], "cosine": [], "clusters": 0}
    if n >= 2:
        k = min(n, settings.n_clusters or math.ceil(math.sqrt(n)))
        sample = np.random.default_rng(settings.seed).permutation(n)[:settings.sample]
        centroids, _ = kmeans2(vectors[sample], k, minit="++", seed=settings.seed)
        labels = np.argmax(vectors @ centroids.T, axis=1)
        found["clusters"] = k
        for cluster in np.unique(labels):
            members = np.flatnonzero(labels == cluster)
            members = members[np.lexsort((members, -preference[members]))]   # best first
            for start in range(0, len(members), BLOCK):
                rows = members[start:start + BLOCK]
                cosine = vectors[rows] @ vectors[members[:start + len(rows)]].T   # to every better or equal one
                cosine[:, start:][np.triu_indices(len(rows))] = -1.0   # not to itself, nor to a worse one
                best = cosine.argmax(axis=1)
                hit = cosine[np.arange(len(rows)), best] >= settings.threshold
                found["removed"].append(rows[hit])
                found["kept"].append(members[best[hit]])
                found["cosine"].append(cosine[np.arange(len(rows)), best][hit])
    pairs = {key: np.concatenate(found[key]) if found[key] else np.zeros(0, np.float64 if key == "cosine" else np.int64)
             for key in ("removed", "kept", "cosine")}
    order = np.argsort(pairs["removed"], kind="stable")  # in the order documents were seen
    return {key: value[order] for key, value in pairs.items()} | {"clusters": found["clusters"]}


def removed(table: pa.Table, rows: list[int], kept_ids: list[str], cosines: list[float]) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected) of one shard: `rows` are its semantic duplicates, of `kept_ids` at `cosines`."""
    drop = np.zeros(table.num_rows, dtype=bool)
    drop[rows] = True
    why, duplicate_of = np.full(table.num_rows, "", dtype=object), np.full(table.num_rows, None, dtype=object)
    why[rows] = [f"duplicate of {i} (cosine {c:.4f})" for i, c in zip(kept_ids, cosines)]
    duplicate_of[rows] = kept_ids
    kept, rejected = split_by_checks(table.append_column("duplicate_of", pa.array(duplicate_of, pa.string())),
                                     [Check(RULE, drop, why, "")])
    return kept.drop_columns(["duplicate_of"]), rejected


def sizes(table: pa.Table) -> np.ndarray:
    return np.asarray(pc.utf8_length(table["text"]), dtype=np.int64)
