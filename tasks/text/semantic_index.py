"""Semantic dedup across versions: the embedding and the kept documents' vectors, in the dedup index.

    index/<version>/semantic/embedder.npz   the embedding this version fitted (idf, basis)
    index/<version>/semantic/<shard>.npz    id and vector of every document its semantic stage kept

A version's index.json names the embedding it used: the version whose LSA embedding it fitted or reused,
or the fastText model's sha256 (the model stays the user's file). Vectors are comparable only under one
embedding, so a run with `dedup.against_published` embeds with the newest published LSA embedding of its
`dims` (or with its model) and matches its documents against every version embedded by it; versions
embedded otherwise are left out, as MinHash leaves out keys made with other sketch settings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from tasks.io import layout
from tasks.dedup.index import committed
from tasks.io.storage import Store
from tasks.text.semantic import Embedder, SemanticDedupSettings


@dataclass(frozen=True)
class Published:
    """What a run matches against: the version holding the embedding to reuse, and the vector files."""
    embedder: str | None = None
    vectors: list[tuple[str, ...]] = field(default_factory=list)


def published(store: Store, settings: SemanticDedupSettings, model: str | None) -> Published:
    """What to match against: with a fastText `model` (its `model_name`), the versions it embedded; else the
    newest version's own embedding of `settings.dims` and the versions embedded by it."""
    def same(entry: dict) -> bool:
        return entry["embedder"] == model if model else (entry["dims"] == settings.dims and
                                                          not entry["embedder"].startswith("fasttext:"))
    versions = [v for v in committed(store) if "semantic" in v and same(v["semantic"])]
    if not versions:
        return Published(model)
    embedder = versions[-1]["semantic"]["embedder"]
    return Published(embedder, [layout.index(v["version"], "semantic", f"{shard}.npz") for v in versions
                                if v["semantic"]["embedder"] == embedder for shard in v["semantic"]["shards"]])


def write_embedder(store: Store, version: str, embedder: Embedder) -> None:
    out = io.BytesIO()
    np.savez(out, idf=embedder.idf, basis=embedder.basis)
    store.write_bytes(out.getvalue(), *layout.index(version, "semantic", "embedder.npz"))


def read_embedder(store: Store, version: str) -> Embedder:
    stored = np.load(io.BytesIO(store.read_bytes(*layout.index(version, "semantic", "embedder.npz"))))
    return Embedder(idf=stored["idf"], basis=stored["basis"])


def write_vectors(store: Store, version: str, shard: str, ids: list[str], vectors: np.ndarray) -> None:
    out = io.BytesIO()
    np.savez(out, ids=np.array(ids, dtype=str), vectors=vectors.astype(np.float16))
    store.write_bytes(out.getvalue(), *layout.index(version, "semantic", f"{shard}.npz"))


def read_vectors(store: Store, parts: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of the published documents of one file."""
    stored = np.load(io.BytesIO(store.read_bytes(*parts)))
    return stored["ids"].astype(object), stored["vectors"].astype(np.float32)


def index_entry(stats: dict, settings: SemanticDedupSettings, shards: list[str]) -> dict:
    """The `semantic` part of a version's index.json: the embedding (a version's name, or a fastText model's
    `fasttext:<sha256>`), its `dims` (LSA's setting, which later runs match on; a model's own) and the shards
    whose vectors are kept."""
    return {"embedder": stats["embedder"], "dims": stats["dims"] if settings.model else settings.dims,
            "shards": shards}
