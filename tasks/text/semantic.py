"""Semantic deduplication, as NeMo Curator's SemDeDup: documents that say the same in other words, which
MinHash (word n-gram overlap) misses.

Embeddings are latent semantic analysis trained on the run's own documents, so nothing is downloaded:
TF-IDF of hashed word unigrams and bigrams (the quality classifier's features, 2^15 buckets) projected on
their top `dims` singular vectors, fitted on a sample of up to `sample` documents, L2-normalised; or the
sentence vectors of a local fastText model (`model`, tasks.text.fasttext_vectors). k-means
(SciPy) on a sample gives the centroids, each document goes to its nearest; within each cluster, documents are
taken best first by dedup's `keep` rule, and one whose cosine to a better one is >= `threshold` is a duplicate
of the most similar. It runs after exact and MinHash dedup as its own stage, the steps over storage in
tasks.text.semantic_steps; the rows removed get rule `dedup.semantic`, the document kept and the cosine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
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
    enabled: bool = Field(False, description="remove documents that say what a better one says (SemDeDup), after "
                                             "MinHash dedup")
    threshold: float = Field(0.998, gt=0, le=1, description=(
        "cosine of two embeddings at which they are duplicates (on the shared sample, pairs at 0.998 are "
        "templated near-copies; at 0.99 different texts of one genre pair up)"))
    n_clusters: int | None = Field(None, ge=1, description="k-means clusters; default: the square root of the documents")
    model: str | None = Field(None, description=(
        "a local fastText .bin (fasttext skipgram or cbow) whose sentence vectors are the embedding; default: "
        "latent semantic analysis fitted on the run's own documents"))
    dims: int = Field(128, ge=2, le=256, description="embedding dimensions (singular vectors kept; a model has its own)")
    sample: int = Field(20_000, ge=10, description="documents the embedding and the clusters are fitted on")
    pairs_task_rows: int = Field(200_000, ge=2, description=(
        "documents one pairs task holds, about (their vectors take dims x 4 bytes each): clusters are spread "
        "over ceil(documents / pairs_task_rows) tasks"))
    seed: int = Field(0, ge=0, description="seed of the embedding's and k-means' sampling")


@dataclass
class Embedder:
    idf: np.ndarray    # (BUCKETS,) float32
    basis: np.ndarray  # (BUCKETS, dims) float32

    def embed(self, texts: pa.Array) -> np.ndarray:
        """(documents, dims) float32, each of length 1 (0 for a text without words)."""
        vectors = (features(texts, BUCKETS) @ sparse.diags(self.idf)) @ self.basis
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    @property
    def dims(self) -> int:
        return self.basis.shape[1]


def train(texts: pa.Array, settings: SemanticDedupSettings) -> Embedder:
    x = features(texts, BUCKETS)
    df = np.bincount(x.indices, minlength=BUCKETS)
    idf = (np.log((1 + x.shape[0]) / (1 + df)) + 1).astype(np.float32)
    weighted = (x @ sparse.diags(idf)).astype(np.float64)
    k = max(1, min(settings.dims, min(x.shape) - 1))
    if x.shape[0] >= 2:
        _, _, vt = svds(weighted, k=k, random_state=settings.seed)
    else:  # one document or none: an exact SVD of it, or a zero basis
        vt = np.linalg.svd(weighted.toarray(), full_matrices=False)[2][:k] if x.shape[0] else np.zeros((1, BUCKETS))
    return Embedder(idf=idf, basis=vt.T.astype(np.float32))


def clusters(documents: int, settings: SemanticDedupSettings, sampled: int) -> int:
    """k of k-means: `n_clusters`, or the square root of the documents, at most the vectors it is fitted on."""
    return max(1, min(sampled, settings.n_clusters or math.ceil(math.sqrt(documents))))


def centroids(sample: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k, dims) float32: k-means on a sample of the vectors, seeded by k-means++ (`seeds`) and refined by
    SciPy's Lloyd iterations."""
    sample = sample.astype(np.float32)
    found, _ = kmeans2(sample, seeds(sample, k, np.random.default_rng(seed)), minit="matrix", seed=seed)
    return found.astype(np.float32)


def seeds(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++: each seed drawn with probability proportional to the squared distance to the nearest seed
    so far, kept up to date one seed at a time (SciPy's own `minit="++"` recomputes every distance at every
    seed: 22 s for 142 seeds among 20,000 vectors, this 0.35 s)."""
    chosen = [int(rng.integers(len(sample)))]
    nearest = ((sample - sample[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        pick = int(rng.choice(len(sample), p=nearest / total)) if total > 0 else int(rng.integers(len(sample)))
        chosen.append(pick)
        nearest = np.minimum(nearest, ((sample - sample[pick]) ** 2).sum(axis=1))
    return sample[chosen]


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The cluster of each vector: the centroid of highest dot product."""
    return np.argmax(vectors @ centroids.T, axis=1).astype(np.int32)


def cluster_pairs(vectors: np.ndarray, preference: np.ndarray, labels: np.ndarray,
                  threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(removed, kept, cosine): indices into `vectors`, whose order is the order documents were seen. Inside
    each cluster, documents are taken best first (highest `preference`, then first seen), and one is removed
    when its cosine to a better one is at or above the threshold, as SemDeDup does: the document it duplicates
    is its most similar better one, so a chain of small steps never joins two documents that are not alike."""
    found = {"removed": [np.zeros(0, np.int64)], "kept": [np.zeros(0, np.int64)], "cosine": [np.zeros(0)]}
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        members = members[np.lexsort((members, -preference[members]))]   # best first
        for start in range(0, len(members), BLOCK):
            rows = members[start:start + BLOCK]
            cosine = vectors[rows] @ vectors[members[:start + len(rows)]].T   # to every better or equal one
            cosine[:, start:][np.triu_indices(len(rows))] = -1.0   # not to itself, nor to a worse one
            best = cosine.argmax(axis=1)
            hit = cosine[np.arange(len(rows)), best] >= threshold
            found["removed"].append(rows[hit])
            found["kept"].append(members[best[hit]])
            found["cosine"].append(cosine[np.arange(len(rows)), best][hit].astype(np.float64))
    removed, kept, cosine = (np.concatenate(found[key]) for key in ("removed", "kept", "cosine"))
    order = np.argsort(removed, kind="stable")  # in the order documents were seen
    return removed[order], kept[order], cosine[order]


def duplicates(vectors: np.ndarray, preference: np.ndarray, settings: SemanticDedupSettings) -> dict:
    """{removed, kept, cosine, clusters} over documents held in memory, as the flow's tasks find them shard by
    shard: k-means on a sample, each vector to its nearest centroid, pairs inside each cluster."""
    if len(vectors) < 2:
        return dict(zip(("removed", "kept"), (np.zeros(0, np.int64),) * 2), cosine=np.zeros(0), clusters=0)
    sample = vectors[np.random.default_rng(settings.seed).permutation(len(vectors))[:settings.sample]]
    found = centroids(sample, clusters(len(vectors), settings, len(sample)), settings.seed)
    removed, kept, cosine = cluster_pairs(vectors, preference, nearest(vectors, found), settings.threshold)
    return {"removed": removed, "kept": kept, "cosine": cosine, "clusters": len(found)}


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
