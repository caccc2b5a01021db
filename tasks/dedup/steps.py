"""The four dedup steps over storage, and the one assembly of them that the flow and in-process callers
(tests, notebooks, benchmarks) share. Each step reads and writes shards under the run's folders and
returns small counts; `deduplicate` hands them to an executor: the flow's maps them as Prefect tasks on the
Dask cluster, `run_serially` calls them in this process.
"""

from __future__ import annotations

import tempfile
from typing import Callable, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks import dedup, runs
from tasks.dedup import ids as dedup_ids
from tasks.dedup import index as dedup_index
from tasks.dedup.index import KeySource
from tasks.gates import Check
from tasks.io import layout
from tasks.io.layout import RunPaths
from tasks.io.storage import Store, shard_name
from tasks.records import StageCounts


class Executor(Protocol):
    def __call__(self, step: Callable, items: list, **constants) -> list:
        """`[step(item, **constants) for item in items]`, wherever the steps run."""


def run_serially(step: Callable, items: list, **constants) -> list:
    return [step(item, **constants) for item in items]


def write_stage_outputs(store: Store, paths: RunPaths, stage: str, shard: str, kept: pa.Table,
                        rejected: pa.Table) -> None:
    store.write_table(kept, *paths.stage(stage, shard))
    store.write_table(rejected, *paths.rejected(stage, shard))


def sketch(shard: str, store: Store, paths: RunPaths, settings: dedup.DedupSettings) -> int:
    columns = ["id", *settings.columns()]
    if settings.keep == "quality":
        columns.append(settings.quality_column)
        present = store.read_schema(*paths.stage("preprocess", shard)).names
        if settings.quality_column not in present:
            raise ValueError(f"dedup.keep is 'quality' but {shard} has no column {settings.quality_column!r} "
                             f"(columns: {', '.join(present)}); set dedup.quality_column")
    table = store.read_table(*paths.stage("preprocess", shard), columns=columns)
    score = table[settings.quality_column] if settings.keep == "quality" else None
    keys, docs = dedup.sketch_shard(table, settings, score)
    store.write_table(keys, *paths.work("keys", shard), row_group_size=max(1, table.num_rows))
    store.write_table(docs, *paths.work("docs", shard))
    runs.mark_done(store, paths, "dedup", f"sketch-{shard}", {"rows": table.num_rows})
    return table.num_rows


def repeated_ids(part: int, store: Store, paths: RunPaths, sources: list[KeySource], parts: int, exact: bool) -> int:
    """The run's records, with ids in hash range `part`, whose id an earlier record holds."""
    docs = pa.concat_tables([dedup_ids.numbered(src, store.read_table(*src.docs, columns=["id", "content_hash"]),
                                                part, parts) for src in sources])
    found = dedup_ids.repeats(docs, sources, exact)
    store.write_table(found, *paths.work("ids", f"part-{part:05d}.parquet"))
    return found.num_rows


def read_repeats(store: Store, paths: RunPaths) -> pa.Table:
    return pa.concat_tables([store.read_table(*paths.work("ids", name))
                             for name in store.list(*paths.work("ids"), pattern="part-*.parquet")]
                            or [dedup_ids.REPEATS_SCHEMA.empty_table()])


def candidates_label(work: tuple[list[int], int], parts: int) -> str:
    """`candidates exact + bands 0-24, keys 1/1`: the band list itself is too long to read in the UI."""
    bands, part = work
    near = [b for b in bands if b != dedup.EXACT_BAND]
    named = (["exact"] if dedup.EXACT_BAND in bands else []) + (
        [f"bands {near[0]}-{near[-1]}" if len(near) > 1 else f"band {near[0]}"] if near else [])
    return f"candidates {' + '.join(named)}, keys {part + 1}/{parts}"


def candidates(work: tuple[list[int], int], store: Store, paths: RunPaths, sources: list[KeySource], parts: int) -> int:
    """`work` is (bands, key range): reads each shard's keys of these bands in this key range once, then
    pairs band by band."""
    bands, part = work
    tables = [(src, dedup.in_key_range(store.read_table(*src.keys, columns=["band", "key", "row"],
                                                        filters=[("band", "in", bands)]), part, parts))
              for src in sources]
    found = 0
    for band in bands:
        shard_keys = [(src.number, t.filter(pc.equal(t["band"], band))) for src, t in tables if src.has_band(band)]
        u, v = dedup.candidate_edges(shard_keys)
        store.write_table(pa.table({"u": u, "v": v}), *paths.work("edges", f"band-{band + 1:03d}-part-{part:05d}.parquet"))
        found += len(u)
    return found


def clusters(shards: list[str], store: Store, paths: RunPaths, sources: list[KeySource],
             settings: dedup.DedupSettings) -> dict:
    """Verify the candidate pairs, cluster them and write each shard's drops. Memory: 17 bytes per candidate
    pair and, per document on a pair, its signature and id; never the other documents, nor any text."""
    u, v, exact = read_edges(store, paths)
    held = np.asarray(read_repeats(store, paths)["doc"])  # quarantined: neither a duplicate nor a representative
    if len(held):
        free = ~(np.isin(u, held) | np.isin(v, held))
        u, v, exact = u[free], v[free], exact[free]
    nodes, signatures = candidate_nodes(store, sources, np.unique(np.concatenate([u, v])))
    drops, stats = dedup.cluster(u, v, exact, nodes, signatures, settings)
    shard_of = np.asarray(drops["doc"]) >> 32
    for i, shard in enumerate(shards):
        store.write_table(drops.filter(pa.array(shard_of == i)), *paths.work("drops", shard))
    return stats | {"removed": drops.num_rows}


def read_edges(store: Store, paths: RunPaths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, found by the exact-content band) of every band's candidate edges."""
    exact_band = f"band-{dedup.EXACT_BAND + 1:03d}-"
    found = [(name.startswith(exact_band), store.read_table(*paths.work("edges", name)))
             for name in store.list(*paths.work("edges"), pattern="band-*.parquet")]
    return (np.concatenate([np.asarray(t["u"], dtype=np.int64) for _, t in found] or [np.zeros(0, np.int64)]),
            np.concatenate([np.asarray(t["v"], dtype=np.int64) for _, t in found] or [np.zeros(0, np.int64)]),
            np.concatenate([np.full(t.num_rows, e) for e, t in found] or [np.zeros(0, bool)]))


def candidate_nodes(store: Store, sources: list[KeySource], members: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """The documents `members` (sorted doc numbers): (doc, id, content_hash, size, score) and their signatures
    row for row, read shard by shard and only from the shards that have one."""
    on_edges = set((members >> 32).tolist())
    nodes, signatures, filled = [], None, 0
    for src in sorted(sources, key=lambda s: s.number):  # by number: the nodes come out sorted by doc
        if src.number not in on_edges:
            continue
        docs = store.read_table(*src.docs, columns=[*dedup.NODE_COLUMNS, "signature"])
        keys = dedup.doc_keys(src.number, docs.num_rows)
        mine = np.isin(keys, members)
        if src.near:  # other sketch settings: only exact edges reach the shard, its signatures are never compared
            found = dedup.signature_matrix(docs["signature"])[mine]
            if signatures is None:  # one array for all: no copies of the signatures, the largest part
                signatures = np.zeros((len(members), found.shape[1]), dtype=np.uint8)
            signatures[filled:filled + len(found)] = found
        filled += int(mine.sum())
        nodes.append(docs.select(dedup.NODE_COLUMNS).filter(pa.array(mine)).append_column("doc", pa.array(keys[mine])))
    nodes = pa.concat_tables(nodes) if nodes else pa.table({
        "id": pa.array([], pa.string()), "content_hash": pa.array([], pa.string()), "size": pa.array([], pa.int64()),
        "score": pa.array([], pa.float64()), "doc": pa.array([], pa.int64())})
    return nodes, signatures if signatures is not None else np.zeros((len(members), 0), dtype=np.uint8)


def remove(shard: str, store: Store, paths: RunPaths, version: str, shards: list[str],
           check: Check | None = None) -> StageCounts:
    """Quarantine the shard's rows with a repeated id, drop its duplicates and write its part of the version's
    (uncommitted) dedup index; validate what it kept for the dedup gate (`check`). `shards` are the run's, in
    document-number order."""
    table = store.read_table(*paths.stage("preprocess", shard))
    docs = store.read_table(*paths.work("docs", shard))
    drops = store.read_table(*paths.work("drops", shard))
    repeats = read_repeats(store, paths)
    repeats = repeats.filter(pc.equal(pc.shift_right(repeats["doc"], 32), shards.index(shard)))
    mask = dedup_ids.held(repeats, table.num_rows)
    held, rest = dedup_ids.hold(table, repeats, mask)
    kept, rejected = dedup.drop_duplicates(rest, docs["content_hash"].filter(pa.array(~mask)),
                                           dedup_ids.renumbered(drops, mask))
    write_stage_outputs(store, paths, "dedup", shard, kept, rejected)
    if check:
        check(store, kept, shard)
    store.write_table(held, *paths.quarantine("dedup", shard))
    removed = np.concatenate([np.asarray(drops["row"]), np.asarray(repeats["row"])])
    keys, docs = dedup.index_entries(store.read_table(*paths.work("keys", shard)), docs, removed)
    store.write_table(keys, *layout.index(version, "keys", shard), row_group_size=max(1, docs.num_rows))
    store.write_table(docs, *layout.index(version, "docs", shard))
    return StageCounts.of(table.num_rows, kept, rejected, quarantined=held.num_rows)


def deduplicate(store: Store, paths: RunPaths, shards: list[str], version: str, documents: int,
                settings: dedup.DedupSettings, run: Executor = run_serially,
                check: Check | None = None) -> tuple[StageCounts, dict]:
    """Sketch per shard, candidates per band and key range, one clustering, a filter per shard,
    which validates its output for the dedup gate (`check`). Reads `<run>/preprocess/<shard>`, writes
    `<run>/dedup/` and the version's uncommitted index."""
    sketched = runs.completed(store, paths, "dedup")  # a resumed run's finished sketches
    run(sketch, [s for s in shards if f"sketch-{s}" not in sketched], store=store, paths=paths, settings=settings)
    sources = dedup_index.run_sources(paths, shards)
    if settings.against_published:
        published, published_docs = dedup_index.published_sources(store, settings)
        sources, documents = published + sources, documents + published_docs
    parts = settings.key_parts(documents)
    repeated = sum(run(repeated_ids, list(range(parts)), store=store, paths=paths, sources=sources, parts=parts,
                       exact=settings.exact))
    if repeated and settings.repeated_ids == "fail":
        raise dedup_ids.RepeatedIds.of(read_repeats(store, paths))
    work = [(bands, part) for bands in settings.band_groups(documents) for part in range(parts)]
    run(candidates, work, store=store, paths=paths, sources=sources, parts=parts)
    (clustering,) = run(clusters, [shards], store=store, paths=paths, sources=sources, settings=settings)
    counts = StageCounts.total(run(remove, shards, store=store, paths=paths, version=version, shards=shards,
                                   check=check))
    return counts, clustering | {"key_ranges": parts, "published_shards": len(sources) - len(shards),
                                 "repeated_ids": repeated}


def dedup_tables(tables: list[pa.Table], settings: dedup.DedupSettings,
                 published: list[tuple[pa.Table, pa.Table]] = ()) -> tuple[list[tuple[pa.Table, pa.Table]], list, dict]:
    """`deduplicate` on tables that fit in memory, through a temporary local store: ([(kept, rejected,
    quarantined)] per table, [(keys, docs)] index entries per table, clustering counts). `published` are index entries of
    earlier results, oldest first, committed as one published version before the tables are deduplicated."""
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        shards = [shard_name(i) for i in range(len(tables))]
        for i, (keys, docs) in enumerate(published):
            store.write_table(keys, *layout.index("published", "keys", shard_name(i)))
            store.write_table(docs, *layout.index("published", "docs", shard_name(i)))
        if published:  # its index, and the manifest that commits it
            dedup_index.commit(store, "published", [shard_name(i) for i in range(len(published))],
                               sum(docs.num_rows for _, docs in published), settings)
            store.write_json({"version": "published"}, *layout.version("published", "manifest.json"))
        paths = RunPaths("in-process")
        for shard, table in zip(shards, tables):
            store.write_table(table, *paths.stage("preprocess", shard))
        _, stats = deduplicate(store, paths, shards, "new", sum(t.num_rows for t in tables),
                               settings.model_copy(update={"against_published": settings.against_published or bool(published)}))
        results = [(store.read_table(*paths.stage("dedup", s)), store.read_table(*paths.rejected("dedup", s)),
                    store.read_table(*paths.quarantine("dedup", s))) for s in shards]
        index = [(store.read_table(*layout.index("new", "keys", s)), store.read_table(*layout.index("new", "docs", s)))
                 for s in shards]
        return results, index, stats
