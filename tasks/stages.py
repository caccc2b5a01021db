"""The Prefect tasks: each reads its shard(s) from storage, calls a plain stage function, writes the
outputs and returns small counts. Paths, not data, travel between tasks; nothing here holds logic.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task

from tasks import collect, dedup, export, gates
from tasks.dedup.index import KeySource
from tasks.preprocess import PreprocessSettings, preprocess
from tasks.storage import Store

IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10])


def stage_counts(n_in: int, kept: int, rejected: pa.Table | None, quarantined: int = 0) -> dict:
    by_rule = Counter(rejected["rule"].to_pylist()) if rejected is not None and rejected.num_rows else {}
    return {"in": n_in, "kept": kept, "rejected": dict(by_rule), "quarantined": quarantined}


def write_stage_outputs(store: Store, run: str, stage: str, shard: str, kept: pa.Table, rejected: pa.Table) -> None:
    store.write_table(kept, run, stage, shard)
    if rejected.num_rows:
        store.write_table(rejected, run, stage, "_rejected", shard)


@task(name="collect", task_run_name="collect unit {unit} ({n_files} files)", **IO_RETRIES)
def collect_unit(files: list[collect.InputFile], sources: list[collect.Source], settings: collect.CollectSettings,
                 store: Store, run: str, unit: int, n_files: int) -> dict:
    return collect.collect_unit(files, sources, settings, store, f"{run}/collect", unit)


@task(name="preprocess", task_run_name="preprocess {shard}", **IO_RETRIES)
def preprocess_shard(store: Store, run: str, shard: str, settings: PreprocessSettings) -> dict:
    table = store.read_table(run, "collect", shard)
    kept, rejected = preprocess(table, settings)
    write_stage_outputs(store, run, "preprocess", shard, kept, rejected)
    return stage_counts(table.num_rows, kept.num_rows, rejected)


@task(name="dedup-sketch", task_run_name="sketch {shard}", **IO_RETRIES)
def dedup_sketch(store: Store, run: str, shard: str, settings: dedup.DedupSettings) -> int:
    columns = ["id", "text"]
    if settings.keep == "quality":
        columns.append(settings.quality_column)
        present = store.read_schema(run, "preprocess", shard).names
        if settings.quality_column not in present:
            raise ValueError(f"dedup.keep is 'quality' but {shard} has no column {settings.quality_column!r} "
                             f"(columns: {', '.join(present)}); set dedup.quality_column")
    table = store.read_table(run, "preprocess", shard, columns=columns)
    keys, docs = dedup.sketch_shard(table, settings, table[settings.quality_column] if len(columns) > 2 else None)
    store.write_table(keys, run, "dedup", "_work", "keys", shard, row_group_size=table.num_rows)
    store.write_table(docs, run, "dedup", "_work", "docs", shard)
    return table.num_rows


def candidates_run_name(parameters: dict) -> str:
    """`candidates exact + bands 0-24, keys 1/1`: the band list itself is too long to read in the UI."""
    near = [b for b in parameters["bands"] if b != dedup.EXACT_BAND]
    parts = (["exact"] if dedup.EXACT_BAND in parameters["bands"] else []) + (
        [f"bands {near[0]}-{near[-1]}" if len(near) > 1 else f"band {near[0]}"] if near else [])
    return f"candidates {' + '.join(parts)}, keys {parameters['part'] + 1}/{parameters['parts']}"


@task(name="dedup-candidates", task_run_name=candidates_run_name, **IO_RETRIES)
def dedup_candidates(store: Store, run: str, sources: list[KeySource], bands: list[int], part: int, parts: int) -> int:
    """Reads each shard's keys of these bands in this key range once, then pairs band by band."""
    tables = [(src, dedup.in_key_range(store.read_table(*src.keys, columns=["band", "key", "row"],
                                                        filters=[("band", "in", bands)]), part, parts))
              for src in sources]
    found = 0
    for band in bands:
        shard_keys = [(src.number, t.filter(pc.equal(t["band"], band))) for src, t in tables if src.has_band(band)]
        u, v = dedup.candidate_edges(shard_keys)
        store.write_table(pa.table({"u": u, "v": v}), run, "dedup", "_work", "edges",
                          f"band-{band + 1:03d}-part-{part:05d}.parquet")
        found += len(u)
    return found


@task(name="dedup-clusters", task_run_name="clusters", **IO_RETRIES)
def dedup_clusters(store: Store, run: str, sources: list[KeySource], shards: list[str],
                   settings: dedup.DedupSettings) -> dict:
    work = (run, "dedup", "_work")
    edges = pa.concat_tables([store.read_table(*work, "edges", name)
                              for name in store.list(*work, "edges", pattern="band-*.parquet")]
                             or [pa.table({"u": pa.array([], pa.int64()), "v": pa.array([], pa.int64())})])
    u, v = np.asarray(edges["u"]), np.asarray(edges["v"])
    members = np.unique(np.concatenate([u, v]))
    on_edges = set((members >> 32).tolist())
    nodes = []
    for src in sources:  # only the shards with a candidate, and only their candidates' rows
        if src.number not in on_edges:
            continue
        docs = store.read_table(*src.docs)
        keys = dedup.doc_keys(src.number, docs.num_rows)
        mine = pa.array(np.isin(keys, members))
        if not src.near:  # other sketch settings: its signatures are not comparable and only exact edges reach it
            docs = docs.set_column(docs.schema.get_field_index("signature"), "signature",
                                   dedup.blank_signatures(docs.num_rows, settings.num_perm))
        nodes.append(docs.filter(mine).append_column("doc", pa.array(keys).filter(mine)))
    drops, stats = dedup.cluster(u, v, pa.concat_tables(nodes) if nodes else dedup.NODES_SCHEMA.empty_table(),
                                 settings)
    shard_of = np.asarray(drops["doc"]) >> 32
    for i, shard in enumerate(shards):
        store.write_table(drops.filter(pa.array(shard_of == i)), *work, "drops", shard)
    return stats | {"removed": drops.num_rows}


@task(name="dedup-filter", task_run_name="dedup {shard}", **IO_RETRIES)
def dedup_filter(store: Store, run: str, shard: str, version: str) -> dict:
    work = (run, "dedup", "_work")
    table = store.read_table(run, "preprocess", shard)
    docs = store.read_table(*work, "docs", shard)
    drops = store.read_table(*work, "drops", shard)
    kept, rejected = dedup.drop_duplicates(table, docs["content_hash"], drops)
    write_stage_outputs(store, run, "dedup", shard, kept, rejected)
    keys, docs = dedup.index_entries(store.read_table(*work, "keys", shard), docs, np.asarray(drops["row"]))
    store.write_table(keys, "index", version, "keys", shard, row_group_size=docs.num_rows)
    store.write_table(docs, "index", version, "docs", shard)
    return stage_counts(table.num_rows, kept.num_rows, rejected)


@task(name="export", task_run_name="export {split}", **IO_RETRIES)
def export_split(store: Store, inputs: list[tuple[str, ...]], split: str, settings: export.ExportSettings,
                 out_parts: tuple[str, ...]) -> dict:
    return export.export_split(store, inputs, split, settings, out_parts)


@task(name="validate", task_run_name="gate {gate}: {shard}", **IO_RETRIES)
def validate_shard(store: Store, parts: tuple[str, ...], gate: str, shard: str, suite: dict,
                   docs_parts: tuple[str, ...]) -> dict:
    table = store.read_table(*parts)
    return gates.validate_shard(table, suite, shard.replace("/", "-"), store, docs_parts)
