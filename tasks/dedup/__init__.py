"""Deduplication, shared by every modality: exact and near-duplicate, shard-parallel and disk-backed.

A modality supplies its sketch through its `DedupSettings` subclass (text: MinHash of word n-grams; image:
perceptual-hash bands): per row an exact content hash, near-duplicate band keys, a signature and a size,
plus the test that verifies a candidate pair on two signatures. Everything else is here:
1. `sketch_shard` per shard: band keys (band after band, the exact content key as band -1; a sketch may give
   a row k keys in a band) and a document table (id, content hash, size, score, signature);
2. per id hash range: records that repeat an earlier record's id (`tasks.dedup.ids`), which are quarantined
   (or fail the run) and take no part in clustering; per band and key range: `candidate_edges` between
   documents sharing a key;
3. `cluster`: verification of the candidates found by near bands by the modality's test (an exact-content
   pair is verified by its equality), connected components over the edges, one representative per cluster
   by `keep`; memory follows the candidate pairs and the documents on them (their signatures), never the
   rest of the corpus;
4. `drop_duplicates` per shard: removed rows go to `_rejected/` with the id they duplicate.
The kept documents' keys and document tables, written under `index/<version>/` once the version is
published, are what later runs dedup against (`against_published`). `tasks.dedup.steps` runs the four
steps over storage, for the flow and for in-process callers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from tasks.dedup.clusters import components, doc_keys, group_edges, representatives
from tasks.records import Check, Settings, split_by_checks

EXACT_BAND = -1
KEYS_SCHEMA = pa.schema([("band", pa.int16()), ("key", pa.int64()), ("row", pa.int32())])
DROPS_SCHEMA = pa.schema([("doc", pa.int64()), ("row", pa.int32()), ("duplicate_of", pa.string()), ("duplicate_hash", pa.string()),
                          ("cluster_size", pa.int64())])


NODE_COLUMNS = ["id", "content_hash", "size", "score"]  # of a document table, what clustering reads besides signatures
PREFERENCE = {"first": None, "longest": "size", "largest": "size", "quality": "score"}  # keep -> docs column


@dataclass
class Sketch:
    """What a modality's sketch gives per row of a shard."""
    content: np.ndarray    # (n, 2) uint64: the exact-duplicate hash
    near: np.ndarray       # (n, bands) uint64: near-duplicate band keys, or (n, bands, k): k keys per band
    has_near: np.ndarray   # (n,) or (n, k) bool: False where a row (its k-th key) has nothing to compare
    signature: np.ndarray  # (n, width) uint8: what `similar` compares
    size: np.ndarray       # (n,) int64: characters, pixels, samples: what keep 'longest'/'largest' ranks by


class DedupSettings(Settings):
    """The settings every modality shares; a modality's subclass adds its sketch and its `keep` choices."""
    exact: bool = Field(True, description="remove records whose content is identical")
    near: bool = Field(True, description="remove near-duplicates")
    verify: bool = Field(True, description="drop candidate pairs the modality's similarity test rejects")
    quality_column: str = Field("lang_score", description="numeric column ranking records when keep is 'quality'")
    against_published: bool = Field(
        False, description="also remove records that duplicate any version already published under the output")
    max_band_rows: int = Field(20_000_000, ge=1, description="band keys one candidate task holds in memory; "
                                                             "bigger bands are split by key range")
    repeated_ids: Literal["quarantine", "fail"] = Field(
        "quarantine", description="records whose id an earlier record (or a published version) holds already: "
                                  "quarantine them, or fail the run")
    one_task_up_to: int = Field(20_000, ge=0, description=(
        "documents (the run's and the published ones it is matched against) up to which every dedup step runs "
        "in one task: five task runs one after another cost more than the work of a few thousand documents"))
    keep: str = "first"

    # The modality's part: what it reads, how many near bands it makes, its sketch and its similarity test.
    def columns(self) -> list[str]:
        raise NotImplementedError

    def near_bands(self) -> int:
        raise NotImplementedError

    def sketch(self, table: pa.Table) -> Sketch:
        raise NotImplementedError

    def similar(self, sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sketch_params(self) -> dict:
        """What near-duplicate band keys depend on: an index built with other values only matches exactly."""
        raise NotImplementedError

    def active_bands(self) -> list[int]:
        return ([EXACT_BAND] if self.exact else []) + (list(range(self.near_bands())) if self.near else [])

    def band_groups(self, documents: int) -> list[list[int]]:
        """Bands handed to one candidate step together: as many as fit max_band_rows keys, and at most an
        eighth of them, so that the steps spread over the workers (the executor batches small ones)."""
        bands = self.active_bands()
        per_task = max(1, min(self.max_band_rows // max(1, documents), -(-len(bands) // 8)))
        return [bands[i:i + per_task] for i in range(0, len(bands), per_task)]

    def key_parts(self, documents: int) -> int:
        """Key ranges per band (a power of two) so one candidate task holds at most max_band_rows keys."""
        return 1 << max(0, int(np.ceil(np.log2(max(1, documents) / self.max_band_rows))))


MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit mix, so band keys spread over the key ranges the candidate step splits by."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & MASK
        return x ^ (x >> np.uint64(31))


@lru_cache(maxsize=8)
def band_positions(width: int, bands: int, band_bits: int, seed: int) -> np.ndarray:
    """(bands, band_bits) bit positions each band samples, drawn once from `seed`."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(width, band_bits, replace=False) for _ in range(bands)])


def bit_sampling_keys(bits: np.ndarray, bands: int, band_bits: int, seed: int) -> np.ndarray:
    """(n, bands) uint64 LSH keys of (n, width) 0/1 bit rows, for Hamming-distance sketches (pHash,
    fingerprints): each band packs `band_bits` sampled bits and is mixed with its band number."""
    positions = band_positions(bits.shape[1], bands, band_bits, seed)
    weights = np.uint64(1) << np.arange(band_bits, dtype=np.uint64)
    values = (bits[:, positions].astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)
    return splitmix64(values ^ (np.arange(bands, dtype=np.uint64) << np.uint64(56)))


def signature_array(data: bytes, n: int, width: int) -> pa.Array:
    """n signatures of `width` bytes each, from their packed bytes, as one fixed-size binary column."""
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(data)])


def signature_matrix(signatures: pa.ChunkedArray) -> np.ndarray:
    """(docs x width) uint8 view of a signature column."""
    arr = signatures.combine_chunks()
    width = arr.type.byte_width
    flat = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    return flat[arr.offset * width:(arr.offset + len(arr)) * width].reshape(len(arr), width)


def sketch_shard(table: pa.Table, settings: DedupSettings, score: pa.ChunkedArray | None = None) -> tuple[pa.Table, pa.Table]:
    """(band keys, documents) of one shard. Keys hold n_docs rows per band (k per document where the sketch
    gives k keys a band), band after band; a key without anything to compare is null: such a row can only
    match exactly."""
    n = table.num_rows
    sk = settings.sketch(table)
    k = sk.near.shape[2] if sk.near.ndim == 3 else 1
    near = sk.near.view(np.int64).reshape(n, sk.near.shape[1], k)
    has_near = np.broadcast_to(sk.has_near if sk.has_near.ndim == 2 else sk.has_near[:, None], (n, k)).ravel()
    near_rows = np.repeat(np.arange(n, dtype=np.int32), k)
    key_columns, ids, rows = [], [], []
    for band in settings.active_bands():
        exact = band == EXACT_BAND
        key_columns.append(pa.array(sk.content[:, 0].view(np.int64)) if exact
                           else pa.array(near[:, band].ravel(), mask=~has_near))
        rows.append(np.arange(n, dtype=np.int32) if exact else near_rows)
        ids.append(np.full(len(rows[-1]), band, dtype=np.int16))
    keys = pa.table([pa.array(np.concatenate(ids) if ids else [], pa.int16()),
                     pa.concat_arrays(key_columns) if key_columns else pa.array([], pa.int64()),
                     pa.array(np.concatenate(rows) if rows else [], pa.int32())], schema=KEYS_SCHEMA)
    signature = np.ascontiguousarray(sk.signature, dtype=np.uint8)
    docs = pa.table({
        "id": table["id"],
        "content_hash": pa.array([f"{a:016x}{b:016x}" for a, b in sk.content.tolist()], pa.string()),
        "size": pa.array(np.asarray(sk.size, dtype=np.int64)),
        "score": score.cast(pa.float64()) if score is not None else pa.nulls(n, pa.float64()),
        "signature": signature_array(signature.tobytes(), n, signature.shape[1]),
    })
    return keys, docs


def key_part(keys: np.ndarray, parts: int) -> np.ndarray:
    """The key range (0..parts-1) of each 64-bit key: its top bits."""
    if parts == 1:
        return np.zeros(len(keys), dtype=np.int64)
    return (keys.view(np.uint64) >> np.uint64(64 - parts.bit_length() + 1)).astype(np.int64)


def in_key_range(keys: pa.Table, part: int, parts: int) -> pa.Table:
    """The rows of a band-keys table whose key falls in key range `part` (rows without a key are dropped)."""
    keys = keys.filter(pc.is_valid(keys["key"]))
    return keys.filter(pa.array(key_part(np.asarray(keys["key"], dtype=np.int64), parts) == part))


def candidate_edges(shard_keys: list[tuple[int, pa.Table]]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs of one band: every document sharing a key, linked to the first that has it (a document
    with one key twice in a band is no pair). `shard_keys` are (shard number, that shard's key and row
    columns for the band)."""
    if not shard_keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    docs = np.concatenate([doc_keys(shard, np.asarray(t["row"])) for shard, t in shard_keys])
    keys = np.concatenate([np.asarray(t["key"], dtype=np.int64) for _, t in shard_keys])
    u, v = group_edges(docs, keys)
    other = u != v
    return u[other], v[other]


def distinct_pairs(u: np.ndarray, v: np.ndarray, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs once each (bands of the same documents repeat them); a pair is exact if any band that
    found it is the exact-content band."""
    pairs = pd.DataFrame({"u": u, "v": v, "exact": exact}).groupby(["u", "v"], sort=False)["exact"].max().reset_index()
    return pairs["u"].to_numpy(), pairs["v"].to_numpy(), pairs["exact"].to_numpy(dtype=bool)


PAIRS_AT_ONCE = 1 << 13  # pairs whose signatures are gathered at once for verification


def verified(u: np.ndarray, v: np.ndarray, doc: np.ndarray, signatures: np.ndarray,
             settings: DedupSettings) -> np.ndarray:
    """Which pairs pass the modality's similarity test; `signatures` are the rows of the sorted `doc`."""
    at_u, at_v = np.searchsorted(doc, u), np.searchsorted(doc, v)
    return np.concatenate([settings.similar(signatures[at_u[i:i + PAIRS_AT_ONCE]], signatures[at_v[i:i + PAIRS_AT_ONCE]])
                           for i in range(0, len(u), PAIRS_AT_ONCE)] or [np.zeros(0, dtype=bool)])


def cluster(u: np.ndarray, v: np.ndarray, exact: np.ndarray, nodes: pa.Table, signatures: np.ndarray,
            settings: DedupSettings) -> tuple[pa.Table, dict]:
    """The removed documents (doc, row, duplicate_of id, its content hash, cluster size) and counts.

    `nodes` (doc, id, content_hash, size, score) describes every document on a pair, sorted by doc, and
    `signatures` holds their signatures row for row. A pair found by the exact-content band needs no
    verification: equal content is the strictest test, and a published shard built with other sketch
    settings has no comparable signature."""
    doc = np.asarray(nodes["doc"])
    u, v, exact = distinct_pairs(u, v, exact)
    stats = {"candidate_pairs": len(u)}
    if settings.verify and len(u):
        keep = exact.copy()
        keep[~exact] = verified(u[~exact], v[~exact], doc, signatures, settings)
        u, v = u[keep], v[keep]
    stats["verified_pairs"] = len(u)
    if not len(u):
        return DROPS_SCHEMA.empty_table(), stats | {"clusters": 0}
    members, labels = components(u, v)
    at = np.searchsorted(doc, members)
    column = PREFERENCE[settings.keep]
    preference = (np.zeros(len(members)) if column is None
                  else np.asarray(nodes[column].cast(pa.float64()).fill_null(-np.inf), dtype=np.float64)[at])
    rep, size = representatives(members, labels, preference)
    drop = (members != rep) & (members >= 0)  # published documents are never removed by a later run
    rep_at = np.searchsorted(doc, rep[drop])
    drops = pa.table({"doc": members[drop], "row": (members[drop] & 0xFFFFFFFF).astype(np.int32),
                      "duplicate_of": nodes["id"].take(rep_at), "duplicate_hash": nodes["content_hash"].take(rep_at),
                      "cluster_size": size[drop]}, schema=DROPS_SCHEMA)
    sizes = np.bincount(np.bincount(labels))
    return drops, stats | {"clusters": int(labels.max()) + 1,
                           "cluster_sizes": {int(k): int(n) for k, n in enumerate(sizes) if n}}


def drop_duplicates(table: pa.Table, content_hash: pa.ChunkedArray, drops: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected) of one shard; `drops` are its removed rows (row, duplicate_of, duplicate_hash, size)."""
    n = table.num_rows
    removed = np.zeros(n, dtype=bool)
    rows = np.asarray(drops["row"], dtype=np.int64)
    removed[rows] = True
    rep_id = np.full(n, None, dtype=object)
    rep_id[rows] = drops["duplicate_of"].to_numpy(zero_copy_only=False)
    rep_hash = np.full(n, None, dtype=object)
    rep_hash[rows] = drops["duplicate_hash"].to_numpy(zero_copy_only=False)
    size = np.zeros(n, dtype=np.int64)
    size[rows] = np.asarray(drops["cluster_size"])
    exact = removed & (rep_hash == np.asarray(content_hash, dtype=object))
    label = np.full(n, "", dtype=object)
    label[removed] = [f"duplicate of {r} (cluster of {s})" for r, s in zip(rep_id[removed], size[removed].tolist())]
    table = table.append_column("content_hash", content_hash).append_column(
        "duplicate_of", pa.array(rep_id, pa.string()))
    kept, rejected = split_by_checks(table, [
        Check("dedup.exact", exact, label, ""),
        Check("dedup.near", removed & ~exact, label, ""),
    ])
    return kept.drop_columns(["duplicate_of"]), rejected


def index_entries(keys: pa.Table, docs: pa.Table, removed: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """The kept documents' keys and document rows, renumbered 0..k-1: one shard of the dedup index."""
    kept = np.ones(docs.num_rows, dtype=bool)
    kept[removed] = False
    new_row = np.cumsum(kept) - 1
    rows = np.asarray(keys["row"])
    keys = keys.filter(pa.array(kept[rows])).set_column(
        2, "row", pa.array(new_row[rows[kept[rows]]].astype(np.int32)))
    return keys, docs.filter(pa.array(kept))
