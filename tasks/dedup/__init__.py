"""Deduplication: exact (content hash) and near-duplicate (MinHash LSH), shard-parallel and disk-backed.

1. `signature_table` per shard: content hash and LSH band keys (written next to the stage's output);
2. `band_edges` per band (and once for the content hash): candidate pairs from equal keys;
3. `duplicate_table`: connected components over all pairs, one representative each (first seen);
4. `drop_duplicates` per shard: removed rows go to `_rejected/` with the id they duplicate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from tasks.dedup.clusters import clusters, doc_keys, group_edges
from tasks.dedup.minhash import band_keys, content_hashes, lsh_params, signatures
from tasks.records import Check, Settings, split_by_checks


class DedupSettings(Settings):
    exact: bool = Field(True, description="remove documents whose normalised text is identical")
    near: bool = Field(True, description="remove near-duplicates with MinHash LSH")
    ngram: int = Field(5, ge=1, description="word n-gram size of the shingles")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity the LSH bands are tuned for")
    bands: int | None = Field(None, ge=1, description="LSH bands; with rows, overrides the threshold's choice")
    rows: int | None = Field(None, ge=1)
    seed: int = 1

    @model_validator(mode="after")
    def _bands_and_rows(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def lsh(self) -> tuple[int, int]:
        return (self.bands, self.rows) if self.bands else lsh_params(self.threshold, self.num_perm)


def band_column(band: int) -> str:
    return f"band_{band:03d}"


def signature_table(table: pa.Table, shard: int, settings: DedupSettings) -> pa.Table:
    """Per row: global key, id, content hash and (for near dedup) its LSH band keys."""
    columns = {"doc": doc_keys(shard, table.num_rows), "id": table["id"],
               "content_hash": pa.array(content_hashes(table["text"]), pa.string())}
    if settings.near:
        bands, rows = settings.lsh()
        sig, has = signatures(table["text"], settings.num_perm, settings.ngram, settings.seed)
        keys = band_keys(sig, bands, rows).view(np.int64)
        for band in range(bands):  # a document without words has no shingles: no band key, exact dedup only
            columns[band_column(band)] = pa.array(keys[:, band], pa.int64(), mask=~has)
    return pa.table(columns)


def band_edges(docs: pa.ChunkedArray, keys: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs of one band (or of the content hash): documents sharing a key."""
    valid = pc.is_valid(keys)
    docs = np.asarray(docs.filter(valid), dtype=np.int64)
    keys = keys.filter(valid)
    keys = np.asarray(keys, dtype=np.int64) if pa.types.is_integer(keys.type) else pd.factorize(np.asarray(keys))[0]
    return group_edges(docs, keys)


DUPLICATES_SCHEMA = pa.schema([("doc", pa.int64()), ("representative", pa.int64()), ("cluster_size", pa.int64())])


def duplicate_table(edges: list[tuple[np.ndarray, np.ndarray]]) -> pa.Table:
    """Every document that duplicates another: its representative (the cluster's first seen) and cluster size."""
    u = np.concatenate([e[0] for e in edges]) if edges else np.zeros(0, dtype=np.int64)
    v = np.concatenate([e[1] for e in edges]) if edges else np.zeros(0, dtype=np.int64)
    nodes, rep, size = clusters(u, v)
    drop = nodes != rep
    return pa.table([nodes[drop], rep[drop], size[drop]], schema=DUPLICATES_SCHEMA)


def drop_duplicates(table: pa.Table, signature: pa.Table, duplicates: pa.Table,
                    representatives: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected) of one shard. `duplicates` lists this shard's removed docs; `representatives` maps
    representative keys to their id and content hash (for `duplicate_of` and exact-versus-near)."""
    table = table.append_column("content_hash", signature["content_hash"])
    dup = duplicates.to_pandas().set_index("doc")
    reps = representatives.to_pandas().set_index("doc")
    docs = np.asarray(signature["doc"])
    removed = np.isin(docs, dup.index.to_numpy())
    row_rep = dup["representative"].reindex(docs).to_numpy()
    rep_id = reps["id"].reindex(row_rep).to_numpy(dtype=object)
    rep_hash = reps["content_hash"].reindex(row_rep).to_numpy(dtype=object)
    exact = removed & (rep_hash == np.asarray(table["content_hash"], dtype=object))
    size = dup["cluster_size"].reindex(docs).to_numpy()
    label = np.full(len(docs), "", dtype=object)
    label[removed] = [f"duplicate of {r} (cluster of {int(s)})" for r, s in zip(rep_id[removed], size[removed])]
    table = table.append_column("duplicate_of", pa.array(np.where(removed, rep_id, None), pa.string()))
    kept, rejected = split_by_checks(table, [
        Check("dedup.exact", exact, label, ""),
        Check("dedup.near", removed & ~exact, label, ""),
    ])
    return kept.drop_columns(["duplicate_of"]), rejected
