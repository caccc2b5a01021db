import numpy as np
import pyarrow as pa
from datasketch import MinHash

from tasks.dedup import DedupSettings, band_column, band_edges, drop_duplicates, duplicate_table, signature_table
from tasks.dedup.clusters import clusters, group_edges
from tasks.dedup.minhash import lsh_params, shingle_hashes, signatures

# 300 words drawn from 2000: its 5-grams are all distinct, so one changed word leaves Jaccard 291/301 = 0.97.
BASE = " ".join(f"w{i}" for i in np.random.default_rng(7).integers(0, 2000, 300))
WORDS = BASE.split()


def change(i: int, text: str = BASE) -> str:
    words = text.split()
    words[i] = "changed"
    return " ".join(words)


def test_signatures_equal_datasketch_minhash_bit_for_bit():
    texts = pa.array([BASE, "two words", "", "a b c d e f g"])
    sig, has = signatures(texts, num_perm=64, ngram=5, seed=3)
    hv, docs = shingle_hashes(texts, 5)
    assert has.tolist() == [True, True, False, True]
    assert np.bincount(docs, minlength=4).tolist() == [296, 1, 0, 3]
    for d in (0, 1, 3):
        reference = MinHash(num_perm=64, seed=3, hashfunc=lambda x: x)
        reference.update_batch([int(x) for x in hv[docs == d]])
        assert (reference.hashvalues == sig[d]).all()


def test_lsh_parameters_come_from_datasketch():
    assert lsh_params(0.8, 128) == (9, 13)
    assert DedupSettings().lsh() == (9, 13)
    assert DedupSettings(bands=16, rows=8).lsh() == (16, 8)


def test_group_edges_link_every_member_to_the_first():
    u, v = group_edges(np.array([5, 3, 9, 4, 7]), np.array([1, 1, 2, 1, 3]))
    assert sorted(zip(u.tolist(), v.tolist())) == [(4, 3), (5, 3)]


def test_clusters_are_transitive_and_keep_the_smallest_key():
    # chain 30-20, 20-10 and a separate pair 50-40: clusters {10,20,30} and {40,50}
    nodes, rep, size = clusters(np.array([30, 20, 50]), np.array([20, 10, 40]))
    assert nodes.tolist() == [10, 20, 30, 40, 50]
    assert rep.tolist() == [10, 10, 10, 40, 40]
    assert size.tolist() == [3, 3, 3, 2, 2]


def shards_of(*tables_texts):
    return [pa.table({"id": ids, "text": texts}) for ids, texts in tables_texts]


def run_dedup(shards, settings=DedupSettings()):
    sigs = [signature_table(t, i, settings) for i, t in enumerate(shards)]
    all_sigs = pa.concat_tables(sigs)
    columns = ["content_hash"] + [band_column(b) for b in range(settings.lsh()[0])]
    edges = [band_edges(all_sigs["doc"], all_sigs[c]) for c in columns]
    dups = duplicate_table(edges)
    reps = all_sigs.select(["doc", "id", "content_hash"])
    return [drop_duplicates(t, s, dups, reps) for t, s in zip(shards, sigs)]


def test_exact_and_near_duplicates_across_shards():
    near = change(150)
    shards = shards_of((["a", "b"], [BASE, "something else entirely, unrelated to the rest"]),
                       (["c", "d", "e"], [BASE.upper(), near, "  " + BASE + "  "]))
    (k0, r0), (k1, r1) = run_dedup(shards)
    assert k0["id"].to_pylist() == ["a", "b"] and r0.num_rows == 0
    assert k1["id"].to_pylist() == []
    assert r1["id"].to_pylist() == ["c", "d", "e"]
    assert r1["duplicate_of"].to_pylist() == ["a", "a", "a"]
    assert r1["rule"].to_pylist() == ["dedup.exact", "dedup.near", "dedup.exact"]
    assert r1["reason"][1].as_py() == "dedup.near: duplicate of a (cluster of 4)"
    assert "content_hash" in k0.column_names


def test_result_does_not_depend_on_sharding():
    texts = [BASE, change(10), "unique text number one here", change(200),
             "unique text number two here", "unique text number one here"]
    ids = [f"t{i}" for i in range(len(texts))]
    one = run_dedup(shards_of((ids, texts)))
    three = run_dedup(shards_of((ids[:2], texts[:2]), (ids[2:4], texts[2:4]), (ids[4:], texts[4:])))
    removed = lambda runs: sorted(zip(*(sum((r[1][c].to_pylist() for r in runs), []) for c in ("id", "duplicate_of"))))
    assert removed(one) == removed(three) == [("t1", "t0"), ("t3", "t0"), ("t5", "t2")]


def test_documents_without_words_only_match_exactly():
    (kept, rejected), = run_dedup(shards_of((["x", "y", "z"], ["...", "!!!", "..."])))
    assert kept["id"].to_pylist() == ["x", "y"]
    assert rejected["duplicate_of"].to_pylist() == ["x"]
