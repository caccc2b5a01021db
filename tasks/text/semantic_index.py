"""Semantic dedup across versions: the embedding and the kept documents' vectors, in the dedup index.

    index/<version>/semantic/embedder.npz   the embedding this version fitted (idf, basis)
    index/<version>/semantic/<shard>.npz    id and vector of every document its semantic stage kept

A version's index.json names the version whose embedding it used (its own, or an earlier one it reused).
Vectors are comparable only under one embedding, so a run with `dedup.against_published` embeds with the
newest published embedding of its `dims` and matches its documents against every version embedded by it;
versions embedded otherwise are left out, as MinHash leaves out keys made with other sketch settings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from tasks.io import layout
from tasks.io.storage import Store
from tasks.text.semantic import Embedder, SemanticDedupSettings


@dataclass(frozen=True)
class Published:
    """What a run matches against: the version holding the embedding to reuse, and the vector files."""
    embedder: str | None = None
    vectors: list[tuple[str, ...]] = field(default_factory=list)


def published(store: Store, settings: SemanticDedupSettings) -> Published:
    versions = sorted((v for v in store.read_jsons(*layout.index("*", "index.json")).values()
                       if v.get("semantic", {}).get("dims") == settings.dims), key=lambda v: (v["created"], v["version"]))
    if not versions:
        return Published()
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


def index_entry(embedder: str, settings: SemanticDedupSettings, shards: list[str]) -> dict:
    """The `semantic` part of a version's index.json."""
    return {"embedder": embedder, "dims": settings.dims, "shards": shards}
