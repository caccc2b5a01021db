"""Semantic dedup: the SemDeDup rule on known vectors, the per-shard removal with its reason, and the
embedding on real text (a reworded copy stays close, another text does not)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tasks.text.semantic import SemanticDedupSettings, duplicates, removed, train


def unit(rows: list[list[float]]) -> np.ndarray:
    v = np.array(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_document_duplicates_its_most_similar_better_one_inside_its_cluster():
    vectors = unit([[1, 0], [0.99, 0.141], [0, 1], [0.141, 0.99], [0.97, 0.243]])
    settings = SemanticDedupSettings(threshold=0.98, n_clusters=2)
    first = duplicates(vectors, np.zeros(5), settings)
    assert (first["removed"].tolist(), first["kept"].tolist(), first["clusters"]) == ([1, 3, 4], [0, 2, 1], 2)
    assert np.allclose(first["cosine"], [0.990, 0.990, 0.995], atol=1e-3)
    # the best document stays; 0 is 0.97 from it, below the threshold, and stays too: no chain through 1
    ranked = duplicates(vectors, np.array([0, 0, 0, 0, 5.0]), settings)
    assert (ranked["removed"].tolist(), ranked["kept"].tolist()) == ([1, 3], [4, 2])


def test_a_shard_loses_its_duplicates_with_the_document_and_cosine_in_the_reason():
    table = pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    kept, rejected = removed(table, [2], ["a"], [0.9991])
    assert kept.column_names == ["id", "text"] and kept["id"].to_pylist() == ["a", "b"]
    assert rejected.to_pylist() == [{"id": "c", "text": "z", "duplicate_of": "a", "rule": "dedup.semantic",
                                     "reason": "dedup.semantic: duplicate of a (cosine 0.9991)"}]


def test_the_embedding_keeps_a_reworded_copy_close_and_another_text_apart():
    base = ("The river had been rising for three days when the ferry finally stopped running, and the farmers "
            "on the east bank moved their cattle to the old quarry above the village.")
    reworded = base.replace("finally", "at last").replace("three", "3").replace("moved", "drove")
    other = "Install the package with pip, then run the command line tool against a folder of JSON files."
    corpus = [base, reworded, other] + [f"filler text number {i} about {w} and {w}s" for i, w in
                                         enumerate(["boats", "trains", "bridges", "roads", "maps"] * 4)]
    embedder = train(pa.array(corpus), SemanticDedupSettings(dims=8))
    v = embedder.embed(pa.array([base, reworded, other]))
    assert v.shape == (3, 8) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.9 and v[0] @ v[2] < 0.5


def test_a_later_version_loses_a_reworded_copy_of_a_published_document(tmp_path):
    """The second run reuses v1's embedding from the index and matches its documents against v1's vectors; the
    copy has every seventh word changed, so MinHash's shingles miss it."""
    import json

    import pyarrow.dataset as ds
    import yaml

    from conftest import E2E, e2e_config
    from flows.config import load_config
    from flows.curate import run_pipeline

    out = tmp_path / "out"
    data = e2e_config(str(E2E / "*.jsonl*"), str(out), incremental=True)
    data["dedup"] = {"against_published": True, "semantic": {"enabled": True, "threshold": 0.9, "pairs_task_rows": 10}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    first = run_pipeline(load_config(tmp_path / "c.yaml", {"export.version": "v1"}))
    assert first["stages"]["semantic"] == {"in": 28, "kept": 27, "quarantined": 0, "rejected": {"dedup.semantic": 1}}
    v1 = ds.dataset([str(p) for p in (out / "versions" / "v1").glob("*/*.parquet")], format="parquet").to_table().sort_by("id").slice(0, 1).to_pylist()[0]
    words = v1["text"].split()
    copy = " ".join("changed" if i % 7 == 3 else w for i, w in enumerate(words))
    (tmp_path / "new").mkdir()
    fresh = ("Our allotment association meets on the first Sunday of every month. The meeting is in the hall "
             "behind the library. This spring we agreed to share the cost of a new water tank. We will plant beans "
             "along the northern fence, where the soil stays damp. A notebook in the shed lets everyone write down "
             "what they sowed and when they watered it. Visitors are welcome to walk the paths between the beds. "
             "Please close the gate behind you, because the neighbour's goats are very curious.")
    (tmp_path / "new" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "reworded", "text": copy}, {"id": "fresh", "text": fresh}]))
    data["sources"].append({"uri": str(tmp_path / "new" / "*.jsonl"), "id_field": "id"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))

    second = run_pipeline(load_config(tmp_path / "c.yaml", {"export.version": "v2"}))
    assert second["stages"]["dedup"] == {"in": 2, "kept": 2, "quarantined": 0, "rejected": {}}
    assert second["stages"]["semantic"] == {"in": 2, "kept": 1, "quarantined": 0, "rejected": {"dedup.semantic": 1}}
    (removed,) = ds.dataset(str(out / "runs" / second["run_id"] / "semantic" / "_rejected"),
                            format="parquet").to_table().to_pylist()
    assert (removed["id"], removed["duplicate_of"]) == ("reworded", v1["id"])
    manifest = json.loads((out / "versions" / "v2" / "manifest.json").read_text())
    assert manifest["dedup"]["semantic"] == {"documents": 2, "published": 27, "clusters": 6,  # ceil(sqrt(29))
                                             "removed": 1, "embedder": "v1", "dims": 27}  # 28 documents fitted
    index = json.loads((out / "index" / "v2" / "index.json").read_text())
    assert index["semantic"] == {"embedder": "v1", "dims": 128, "shards": index["shards"]}
    assert not (out / "index" / "v2" / "semantic" / "embedder.npz").exists()


def test_pairs_split_over_tasks_find_what_one_task_finds(tmp_path):
    """Clusters spread over pairs tasks (each reads only its row group of every shard) give the removals one
    task gives; the copies in the third shard, every twentieth word changed, lose to their originals."""
    import gzip
    import json

    from tasks.io.layout import RunPaths
    from tasks.io.storage import Store
    from tasks.text import semantic_index, semantic_steps

    from conftest import E2E

    rows = [json.loads(line) for line in gzip.open(E2E / "part-a.jsonl.gz", "rt")]
    originals = [r for r in rows if len(r["text"].split()) >= 80][:24]
    copies = [{"id": f"copy-{r['id']}", "text": " ".join("changed" if i % 20 == 3 else w for i, w in
                                                       enumerate(r["text"].split()))} for r in originals[:6]]
    store, paths = Store(str(tmp_path)), RunPaths("r")
    shards = {"s0": originals[:12], "s1": originals[12:], "s2": copies}
    for name, docs in shards.items():
        store.write_table(pa.Table.from_pylist(docs), *paths.stage("dedup", name))
    inputs = [paths.stage("dedup", name) for name in shards]

    def found(pairs_task_rows: int) -> tuple[int, dict]:
        settings = SemanticDedupSettings(enabled=True, threshold=0.85, pairs_task_rows=pairs_task_rows)
        fitted = semantic_steps.fit(store, inputs, [], settings, "v1", None)
        for source, name in enumerate(shards):
            semantic_steps.embed(store, paths, "dedup", name, source, fitted, "first", "quality_score")
        return fitted, semantic_steps.merge([semantic_steps.pairs(store, paths, list(shards), 0, task,
                                                                  fitted.embedder.dims, 0.85)
                                             for task in range(fitted.tasks)])

    one_fitted, one = found(1000)
    many_fitted, many = found(10)
    assert (one_fitted.tasks, many_fitted.tasks, len(many_fitted.centroids)) == (1, 3, 6)  # ceil(30 / 10), ceil(sqrt(30))
    by_task = store.read_table(*paths.work("semantic", "s0"))["task"].to_pylist()
    assert pq_row_groups(store, paths.work("semantic", "s0")) == len(set(by_task))
    assert {k: sorted(zip(*v)) for k, v in many.items()} == {k: sorted(zip(*v)) for k, v in one.items()}
    rows, kept, cosine = many["s2"]
    assert sorted(zip(rows, kept)) == [(i, r["id"]) for i, r in enumerate(originals[:6])]
    assert min(cosine) >= 0.85 and set(many) == {"s2"}

    counts = semantic_steps.remove(store, paths, "dedup", "s2", many["s2"], "v1", many_fitted.embedder.dims)
    assert (counts.entered, counts.kept, counts.rejected) == (6, 0, {"dedup.semantic": 6})
    counts = semantic_steps.remove(store, paths, "dedup", "s0", ([], [], []), "v1", many_fitted.embedder.dims)
    ids, vectors = semantic_index.read_vectors(store, ("index", "v1", "semantic", "s0.npz"))
    assert ids.tolist() == [r["id"] for r in originals[:12]] and vectors.shape == (12, many_fitted.embedder.dims)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-2)


def pq_row_groups(store, parts) -> int:
    import pyarrow.parquet as pq

    with store.fs.open(store.path(*parts), "rb") as f:
        return pq.ParquetFile(f).metadata.num_row_groups


def test_row_groups_by_pairs_task_and_heads_read_over_s3(s3):
    """A pairs task reads its row group only; the fit reads a shard's first rows and its row count."""
    from tasks.io.storage import Store

    _, options = s3
    store = Store("s3://curate/out", options)
    groups = [pa.table({"task": [t] * n, "row": list(range(n))}) for t, n in [(0, 3), (1, 2), (2, 4)]]
    store.write_row_groups(groups, "parts.parquet")
    assert pq_row_groups(store, ("parts.parquet",)) == 3
    assert store.read_table("parts.parquet", filters=[("task", "=", 1)]).to_pylist() == [
        {"task": 1, "row": 0}, {"task": 1, "row": 1}]
    head, rows = store.read_head("parts.parquet", columns=["row"], rows=4)
    assert (head["row"].to_pylist(), rows) == ([0, 1, 2, 0], 9)  # across row groups
