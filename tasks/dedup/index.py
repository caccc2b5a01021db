"""The dedup index: band keys and document rows of every published document, kept on the output storage.

    index/<version>/keys/<shard>.parquet   band, key, row (band after band)
    index/<version>/docs/<shard>.parquet   id, content_hash, size, score, signature
    index/<version>/semantic/...           text's semantic dedup embedding and vectors (tasks.text.semantic_index)
    index/<version>/index.json             what the index holds, written just before the version's manifest,
                                           which commits it: an index whose version has no manifest is ignored

A run with `against_published` reads the committed versions as extra shards numbered below zero (oldest
first), so published documents sort before the run's own and always stay the representative.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from tasks.io import layout
from tasks.io.layout import RunPaths
from tasks.io.storage import Store

from . import EXACT_BAND, DedupSettings


@dataclass(frozen=True)
class KeySource:
    """One shard's band keys and documents, under the shard number its document keys use."""
    number: int
    keys: tuple[str, ...]
    docs: tuple[str, ...]
    near: bool = True  # False: built with other sketch settings, so only its exact band is comparable

    def has_band(self, band: int) -> bool:
        return self.near or band == EXACT_BAND


def run_sources(paths: RunPaths, shards: list[str]) -> list[KeySource]:
    return [KeySource(i, paths.work("keys", s), paths.work("docs", s)) for i, s in enumerate(shards)]


def committed(store: Store) -> list[dict]:
    """The index.json of every published version (its manifest commits it), oldest first."""
    published = layout.published(store)
    return sorted((v for v in store.read_jsons(*layout.index("*", "index.json")).values() if v["version"] in published),
                  key=lambda v: (v["created"], v["version"]))


def published_sources(store: Store, settings: DedupSettings) -> tuple[list[KeySource], int]:
    """The committed index shards, oldest version first, and how many documents they hold."""
    versions = committed(store)
    files = [(v, shard) for v in versions for shard in v["shards"]]
    sources = [KeySource(j - len(files), layout.index(v["version"], "keys", shard), layout.index(v["version"], "docs", shard),
                         near=v["sketch"] == settings.sketch_params()) for j, (v, shard) in enumerate(files)]
    return sources, sum(v["documents"] for v in versions)


def commit(store: Store, version: str, shards: list[str], documents: int, settings: DedupSettings,
           semantic: dict | None = None) -> None:
    """What the version's index holds, committed by its manifest; `semantic` describes the version's semantic dedup vectors (tasks.text.semantic_index)."""
    store.write_json({"version": version, "created": datetime.now(timezone.utc).isoformat(), "documents": documents,
                      "shards": shards, "sketch": settings.sketch_params(), **({"semantic": semantic} if semantic else {})},
                     *layout.index(version, "index.json"))
