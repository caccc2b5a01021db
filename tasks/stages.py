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


@task(name="dedup-signatures", task_run_name="signatures {shard}", **IO_RETRIES)
def dedup_signatures(store: Store, run: str, shard: str, index: int, settings: dedup.DedupSettings) -> int:
    table = store.read_table(run, "preprocess", shard, columns=["id", "text"])
    store.write_table(dedup.signature_table(table, index, settings), run, "dedup", "_work", "signatures", shard)
    return table.num_rows


@task(name="dedup-band", task_run_name="candidates {column}", **IO_RETRIES)
def dedup_band(store: Store, run: str, shards: list[str], column: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [store.read_table(run, "dedup", "_work", "signatures", s, columns=["doc", column]) for s in shards]
    table = pa.concat_tables(parts)
    return dedup.band_edges(table["doc"], table[column])


@task(name="dedup-clusters", task_run_name="clusters", **IO_RETRIES)
def dedup_clusters(store: Store, run: str, shards: list[str], edges: list[tuple[np.ndarray, np.ndarray]]) -> int:
    duplicates = dedup.duplicate_table(edges)
    reps = pa.array(np.unique(np.asarray(duplicates["representative"])), pa.int64())
    found = []
    for s in shards:  # read only the representatives' ids and hashes: memory follows the duplicates, not the corpus
        sig = store.read_table(run, "dedup", "_work", "signatures", s, columns=["doc", "id", "content_hash"])
        found.append(sig.filter(pc.is_in(sig["doc"], reps)))
    store.write_table(duplicates, run, "dedup", "_work", "duplicates.parquet")
    store.write_table(pa.concat_tables(found) if found else pa.table({}), run, "dedup", "_work", "representatives.parquet")
    return duplicates.num_rows


@task(name="dedup-filter", task_run_name="dedup {shard}", **IO_RETRIES)
def dedup_filter(store: Store, run: str, shard: str, index: int) -> dict:
    table = store.read_table(run, "preprocess", shard)
    signature = store.read_table(run, "dedup", "_work", "signatures", shard, columns=["doc", "content_hash"])
    duplicates = store.read_table(run, "dedup", "_work", "duplicates.parquet")
    shard_of = pc.shift_right(duplicates["doc"], 32)
    duplicates = duplicates.filter(pc.equal(shard_of, index))
    reps = store.read_table(run, "dedup", "_work", "representatives.parquet")
    kept, rejected = dedup.drop_duplicates(table, signature, duplicates, reps)
    write_stage_outputs(store, run, "dedup", shard, kept, rejected)
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
