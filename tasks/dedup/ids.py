"""Global id uniqueness: every published id names one record, across shards and across published versions.

Collect can only check ids within a shard. Dedup sees every id, so it finds the records that repeat an
earlier record's id with other content (earlier: a published version, then shard order, then row order) and
either fails the run or quarantines the later copies (`dedup.repeated_ids`). Ids are split into the same hash ranges as
band keys, so one task never holds more than its range.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.dedup.index import KeySource

REPEATS_SCHEMA = pa.schema([("doc", pa.int64()), ("row", pa.int32()), ("id", pa.string()), ("error", pa.string())])


def id_part(ids: pa.ChunkedArray | pa.Array, parts: int) -> np.ndarray:
    """The hash range (0..parts-1) of each id."""
    if parts == 1:
        return np.zeros(len(ids), dtype=np.int64)
    bits = parts.bit_length() - 1
    return np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big") >> (64 - bits)
                     for i in ids.to_pylist()], dtype=np.int64)


def place(source: KeySource, row: int) -> str:
    """Where a document is, in words: its run shard and row, or the published version that holds it."""
    if source.number < 0:
        return f"published version {source.docs[1]}"
    return f"shard {source.docs[-1].removesuffix('.parquet')}, row {row}"


def numbered(source: KeySource, docs: pa.Table, part: int, parts: int) -> pa.Table:
    """(id, content_hash, doc) of a source's documents whose id falls in hash range `part`; doc is the
    document number."""
    doc = (np.int64(source.number) << 32) + np.arange(docs.num_rows, dtype=np.int64)
    table = docs.select(["id", "content_hash"]).append_column("doc", pa.array(doc))
    return table if parts == 1 else table.filter(pa.array(id_part(docs["id"], parts) == part))


def repeats(docs: pa.Table, sources: list[KeySource], exact: bool) -> pa.Table:
    """The run's documents (numbered, see `numbered`) whose id an earlier document holds, each with an error
    that says where the first one is. With `exact` dedup on, a later copy with the first one's very content is
    the same record seen twice (a source file that grew is read again whole): exact dedup removes it."""
    counted = docs.group_by("id").aggregate([("doc", "min"), ("doc", "count")])
    taken = counted.filter(pc.greater(counted["doc_count"], 1)).select(["id", "doc_min"])
    later = docs.join(taken, "id").filter((pc.field("doc") != pc.field("doc_min")) & (pc.field("doc") >= 0))
    if exact and later.num_rows:
        firsts = docs.select(["doc", "content_hash"]).rename_columns(["doc_min", "first_hash"])
        later = later.join(firsts, "doc_min").filter(pc.field("content_hash") != pc.field("first_hash"))
    if not later.num_rows:
        return REPEATS_SCHEMA.empty_table()
    later = later.sort_by("doc")
    by_number = {src.number: src for src in sources}
    doc, first = np.asarray(later["doc"]), np.asarray(later["doc_min"]).tolist()
    errors = [f"id {i!r} repeats the id of an earlier record ({place(by_number[f >> 32], f & 0xFFFFFFFF)})"
              for i, f in zip(later["id"].to_pylist(), first)]
    return pa.table({"doc": doc, "row": (doc & 0xFFFFFFFF).astype(np.int32), "id": later["id"],
                     "error": pa.array(errors, pa.string())}, schema=REPEATS_SCHEMA)


def held(repeats: pa.Table, rows: int) -> np.ndarray:
    """Which of a shard's `rows` rows repeat an earlier id (`repeats` are the shard's)."""
    mask = np.zeros(rows, dtype=bool)
    mask[np.asarray(repeats["row"], dtype=np.int64)] = True
    return mask


def hold(table: pa.Table, repeats: pa.Table, mask: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """(held, rest) of a shard's table, `mask` being `held(repeats, ...)`: the rows with a repeated id, with
    their `error`, and the others."""
    return (table.filter(pa.array(mask)).append_column("error", repeats.sort_by("row")["error"]),
            table.filter(pa.array(~mask)))


def renumbered(drops: pa.Table, mask: np.ndarray) -> pa.Table:
    """A shard's dedup drops with their rows renumbered as in `hold`'s rest (no drop is a held row)."""
    new_row = (np.cumsum(~mask) - 1).astype(np.int32)
    return drops.set_column(drops.schema.get_field_index("row"), "row",
                            pa.array(new_row[np.asarray(drops["row"], dtype=np.int64)], pa.int32()))


class RepeatedIds(Exception):
    """Records repeat earlier records' ids and `dedup.repeated_ids` is `fail`."""

    @classmethod
    def of(cls, found: pa.Table) -> RepeatedIds:
        examples = "; ".join(found["error"].to_pylist()[:3])
        return cls(f"{found.num_rows} records repeat an earlier record's id, e.g. {examples}. Give them unique ids "
                   "in the source, or set dedup.repeated_ids: quarantine to keep the first and quarantine the rest")
