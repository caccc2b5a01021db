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
