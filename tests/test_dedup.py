import re

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

from tasks.dedup import EXACT_BAND, index_entries, key_part, sketch_shard
from tasks.dedup.clusters import components, group_edges, representatives
from tasks.dedup.ids import RepeatedIds
from tasks.dedup.steps import dedup_tables
from tasks.text.dedup import TextDedupSettings
from tasks.text.minhash import lsh_params, sketch

# 300 words drawn from 2000: its 5-grams are all distinct, so one changed word leaves Jaccard 291/301 = 0.97.
BASE = " ".join(f"w{i}" for i in np.random.default_rng(7).integers(0, 2000, 300))
M64 = (1 << 64) - 1


def change(i: int, text: str = BASE, word: str = "changed") -> str:
    words = text.split()
    words[i] = word
    return " ".join(words)


def fnv1a(units) -> int:
    h = 0xCBF29CE484222325
    for u in units:
        h = ((h ^ u) * 0x100000001B3) & M64
    return h


def reference_shingles(text: str, n: int) -> list[int]:
    """The shingle definition of tasks/dedup/minhash.py, restated in plain Python."""
    words = [fnv1a(w.encode()) for w in re.findall(r"[^\W_]+", text.lower())]
    grams = [words[i:i + n] for i in range(len(words) - n + 1)] if len(words) >= n else ([words] if words else [])
    return [(h >> 32) ^ (h & 0xFFFFFFFF) for h in (fnv1a(g) for g in grams)]


def test_signatures_equal_datasketch_minhash_over_the_reference_shingles_bit_for_bit():
    texts = [BASE, "Two words", "", "a b c d e f g", "Ünïcode Straße, 北京 2024 — déjà-vu!", "...!!!"]
    sig, shingles, _ = sketch(pa.array(texts), num_perm=64, ngram=5, seed=3)
    assert shingles.tolist() == [296, 1, 0, 3, 2, 0]
    for text, row in zip(texts, sig):
        reference = MinHash(num_perm=64, seed=3, hashfunc=lambda x: x)
        reference.update_batch(reference_shingles(text, 5))
        assert (reference.hashvalues == row).all(), text


def test_content_hash_ignores_case_and_whitespace_only():
    _, _, content = sketch(pa.array(["Hello  World\n", " hello world", "hello world!", "hello\tworld"]), 16, 5, 1)
    assert content[0].tolist() == content[1].tolist() == content[3].tolist()
    assert content[2].tolist() != content[0].tolist()


def test_lsh_parameters_come_from_datasketch():
    assert lsh_params(0.8, 128) == (9, 13)
    assert TextDedupSettings(num_perm=128, verify=False).lsh() == (9, 13)
    assert TextDedupSettings().lsh() == (25, 10)  # 256 permutations, recall-weighted because candidates are verified
    assert TextDedupSettings(bands=16, rows=8).lsh() == (16, 8)
    assert TextDedupSettings(verify=False).active_bands() == [EXACT_BAND, *range(17)]


def test_key_ranges_split_a_band_by_the_top_bits():
    assert TextDedupSettings(max_band_rows=100).key_parts(100) == 1
    assert TextDedupSettings(max_band_rows=100).key_parts(101) == 2
    assert TextDedupSettings(max_band_rows=100).key_parts(1000) == 16
    # small bands share a step, at most an eighth of them so steps spread over the workers (the flow batches
    # steps into one task per worker thread: each task costs ~0.1 s of orchestration); large ones get their own
    nine = TextDedupSettings(max_band_rows=100, bands=9, rows=13)
    assert nine.band_groups(10) == [[-1, 0], [1, 2], [3, 4], [5, 6], [7, 8]]
    assert TextDedupSettings(max_band_rows=10**6).band_groups(10) == [[-1, 0, 1, 2], *(
        [b, b + 1, b + 2, b + 3] for b in range(3, 23, 4)), [23, 24]]
    assert nine.band_groups(40) == [[-1, 0], [1, 2], [3, 4], [5, 6], [7, 8]]
    assert nine.band_groups(1000) == [[b] for b in [EXACT_BAND, *range(9)]]
    keys = np.array([0, 1 << 62, -(1 << 63), -1], dtype=np.int64)  # top bits 00, 01, 10, 11
    assert key_part(keys, 4).tolist() == [0, 1, 2, 3]
    assert key_part(keys, 2).tolist() == [0, 0, 1, 1]


def test_group_edges_link_every_member_to_the_first():
    u, v = group_edges(np.array([5, 3, 9, 4, 7]), np.array([1, 1, 2, 1, 3]))
    assert sorted(zip(u.tolist(), v.tolist())) == [(4, 3), (5, 3)]


def test_components_follow_transitive_chains():
    # chain 30-20, 20-10 (30 and 10 never met) and a separate pair 50-40
    nodes, labels = components(np.array([30, 20, 50]), np.array([20, 10, 40]))
    assert nodes.tolist() == [10, 20, 30, 40, 50]
    assert labels.tolist() == [0, 0, 0, 1, 1]


def test_representative_rule_first_longest_and_published():
    nodes, labels = np.array([-5, 10, 20, 30, 40]), np.array([0, 0, 1, 1, 1])
    preference = np.array([1.0, 99.0, 3.0, 7.0, 7.0])
    rep, size = representatives(nodes, labels, preference)
    # a published document (negative key) wins over any preference; otherwise the highest, ties to the first
    assert rep.tolist() == [-5, -5, 30, 30, 30] and size.tolist() == [2, 2, 3, 3, 3]
    rep, _ = representatives(nodes, labels, np.zeros(5))
    assert rep.tolist() == [-5, -5, 20, 20, 20]


def dedup_shards(tables, settings=TextDedupSettings(), published=()):
    return dedup_tables(tables, settings.model_copy(update={"quality_column": "score"}), list(published))


def shard(ids, texts, **columns):
    return pa.table({"id": ids, "text": texts, **columns})


def removed(results):
    return sorted((r, d, rule) for _, rej, _ in results
                  for r, d, rule in zip(rej["id"].to_pylist(), rej["duplicate_of"].to_pylist(), rej["rule"].to_pylist()))


def test_exact_and_near_duplicates_across_shards():
    results, _, stats = dedup_shards([
        shard(["a", "b"], [BASE, "something else entirely, unrelated to the rest"]),
        shard(["c", "d", "e"], [BASE.upper(), change(150), "  " + BASE + "  "])])
    (k0, r0, _), (k1, r1, _) = results
    assert k0["id"].to_pylist() == ["a", "b"] and r0.num_rows == 0
    assert k1["id"].to_pylist() == []
    assert r1["id"].to_pylist() == ["c", "d", "e"]
    assert r1["duplicate_of"].to_pylist() == ["a", "a", "a"]
    assert r1["rule"].to_pylist() == ["dedup.exact", "dedup.near", "dedup.exact"]
    assert r1["reason"][1].as_py() == "dedup.near: duplicate of a (cluster of 4)"
    assert "content_hash" in k0.column_names
    assert stats["clusters"] == 1


def test_transitive_chain_is_one_cluster_even_where_the_ends_differ_more():
    # each step changes 12 more words: neighbours share ~0.8 of their 5-grams, the ends far less
    chain = [BASE]
    for step in range(3):
        text = chain[-1]
        for i in range(step * 100 + 5, step * 100 + 100, 8):
            text = change(i, text, f"s{step}x{i}")
        chain.append(text)
    results, _, _ = dedup_shards([shard(["c0", "c1", "c2", "c3"], chain)], TextDedupSettings(verify=False, bands=32, rows=4))
    assert removed(results) == [("c1", "c0", "dedup.near"), ("c2", "c0", "dedup.near"), ("c3", "c0", "dedup.near")]


@pytest.mark.parametrize("keep,expected", [
    ("first", [("long", "short", "dedup.near"), ("mid", "short", "dedup.near")]),
    ("longest", [("mid", "long", "dedup.near"), ("short", "long", "dedup.near")]),
    ("quality", [("long", "mid", "dedup.near"), ("short", "mid", "dedup.near")]),
])
def test_the_representative_rule_picks_who_stays(keep, expected):
    texts = [BASE, BASE + " tail", BASE + " a longer tail"]
    table = shard(["short", "mid", "long"], texts, score=[0.5, 0.9, 0.7])
    results, _, _ = dedup_shards([table], TextDedupSettings(keep=keep))
    assert removed(results) == expected


def test_verification_drops_candidates_below_the_threshold():
    # one band of one row: every pair sharing a single minimum becomes a candidate
    texts = [BASE, " ".join(BASE.split()[:150] + [f"other{i}" for i in range(150)])]  # Jaccard about 0.33
    loose = TextDedupSettings(bands=1, rows=1, num_perm=128, seed=5, verify=False)  # seed 5: the minima collide
    assert removed(dedup_shards([shard(["x", "y"], texts)], loose)[0]) == [("y", "x", "dedup.near")]
    results, _, stats = dedup_shards([shard(["x", "y"], texts)], loose.model_copy(update={"verify": True}))
    assert removed(results) == []
    assert stats == {"candidate_pairs": 1, "verified_pairs": 0, "clusters": 0, "removed": 0, "key_ranges": 1,
                     "published_shards": 0, "repeated_ids": 0}


def test_cluster_counts_report_cluster_sizes():
    texts = [BASE, change(3), change(250), "another text entirely, with words", "another text entirely, with words"]
    _, _, stats = dedup_shards([shard([f"d{i}" for i in range(5)], texts)])
    assert stats["clusters"] == 2 and stats["cluster_sizes"] == {2: 1, 3: 1}


def test_result_does_not_depend_on_sharding_or_key_ranges():
    texts = [BASE, change(10), "unique text number one here", change(200),
             "unique text number two here", "unique text number one here"]
    ids = [f"t{i}" for i in range(len(texts))]
    one, _, _ = dedup_shards([shard(ids, texts)])
    three, _, _ = dedup_shards([shard(ids[:2], texts[:2]), shard(ids[2:4], texts[2:4]), shard(ids[4:], texts[4:])])
    split, _, _ = dedup_shards([shard(ids, texts)], TextDedupSettings(max_band_rows=2))
    assert removed(one) == removed(three) == removed(split) == [
        ("t1", "t0", "dedup.near"), ("t3", "t0", "dedup.near"), ("t5", "t2", "dedup.exact")]


def test_documents_without_words_only_match_exactly():
    results, _, _ = dedup_shards([shard(["x", "y", "z"], ["...", "!!!", "..."])])
    assert results[0][0]["id"].to_pylist() == ["x", "y"]
    assert removed(results) == [("z", "x", "dedup.exact")]


def test_published_documents_stay_and_new_copies_of_them_go():
    first, index, _ = dedup_shards([shard(["old1", "old2"], [BASE, "an old document about something else"])])
    assert removed(first) == []
    assert index[0][1]["id"].to_pylist() == ["old1", "old2"]
    new = shard(["new1", "new2", "new3"], [change(7), "a brand new document", "An old document about something ELSE"])
    results, _, _ = dedup_shards([new], TextDedupSettings(keep="longest"), published=index)
    assert removed(results) == [("new1", "old1", "dedup.near"), ("new3", "old2", "dedup.exact")]
    assert results[0][0]["id"].to_pylist() == ["new2"]


def test_an_index_of_other_sketch_settings_still_matches_exact_copies(tmp_path):
    """Published under num_perm 128, deduplicated with 256: its signatures and bands are not comparable, so
    only exact copies of its documents can be found, and they are, verified by their equal content; the
    run's own documents still match each other near."""
    from tasks.dedup import index as dedup_index
    from tasks.dedup.steps import deduplicate
    from tasks.io import layout
    from tasks.io.layout import RunPaths
    from tasks.io.storage import Store

    old = TextDedupSettings(num_perm=128)
    _, index, _ = dedup_shards([shard(["old1", "old2"], [BASE, "an old document about something else"])], old)
    store, paths = Store(str(tmp_path)), RunPaths("run")
    store.write_table(index[0][0], *layout.index("v0", "keys", "part-00000.parquet"))
    store.write_table(index[0][1], *layout.index("v0", "docs", "part-00000.parquet"))
    dedup_index.commit(store, "v0", ["part-00000.parquet"], 2, old)
    store.write_json({"version": "v0"}, *layout.version("v0", "manifest.json"))  # which commits the index
    store.write_table(shard(["new1", "new2"], [change(7), BASE]), *paths.stage("preprocess", "part-00000.parquet"))
    counts, stats = deduplicate(store, paths, ["part-00000.parquet"], "v1", 2,
                                TextDedupSettings(against_published=True))
    rejected = store.read_table(*paths.rejected("dedup", "part-00000.parquet"))
    assert list(zip(rejected["id"].to_pylist(), rejected["duplicate_of"].to_pylist(), rejected["rule"].to_pylist())) \
        == [("new1", "old1", "dedup.near"), ("new2", "old1", "dedup.exact")]  # new1 is a near copy of new2
    assert (counts.kept, stats["candidate_pairs"], stats["verified_pairs"]) == (0, 2, 2)


def test_index_entries_keep_the_kept_rows_renumbered():
    table = shard(["a", "b", "c"], [BASE, BASE, "other words here"])
    keys, docs = sketch_shard(table, TextDedupSettings())
    k, d = index_entries(keys, docs, np.array([1]))
    assert d["id"].to_pylist() == ["a", "c"]
    assert k.num_rows == 2 * 26 and set(k["row"].to_pylist()) == {0, 1}
    exact = k.filter(pa.compute.equal(k["band"], EXACT_BAND))
    assert exact["key"].to_pylist() == keys.filter(pa.compute.equal(keys["band"], EXACT_BAND))["key"].to_pylist()[::2]


def test_ids_are_unique_across_shards_and_published_versions():
    """Collect checks ids within a shard only; dedup holds every later copy of an id, whichever shard it is in,
    before clustering, so a held record is never a cluster's representative."""
    _, index, _ = dedup_shards([shard(["p1"], ["a published document about rivers"])])
    results, new_index, stats = dedup_shards([
        shard(["a", "b"], [BASE, "some unrelated words in here"]),
        shard(["c", "a", "p1", "b"], [change(3), "another text, whose id is taken", "fresh words, taken id",
                                      "some unrelated words in here"])],
        published=index)
    (k0, r0, q0), (k1, r1, q1) = results
    assert k0["id"].to_pylist() == ["a", "b"] and q0.num_rows == 0
    # the same id with the same content is the same record read twice: an exact duplicate, not a conflict
    assert k1["id"].to_pylist() == [] and removed(results) == [("b", "b", "dedup.exact"), ("c", "a", "dedup.near")]
    assert q1["text"].to_pylist() == ["another text, whose id is taken", "fresh words, taken id"]
    assert q1["error"].to_pylist() == [
        "id 'a' repeats the id of an earlier record (shard part-00000, row 0)",
        "id 'p1' repeats the id of an earlier record (published version published)"]
    assert stats["repeated_ids"] == 2
    assert [d["id"].to_pylist() for _, d in new_index] == [["a", "b"], []]  # held records stay out of the index


def test_repeated_ids_fail_the_run_when_so_configured():
    tables = [shard(["x", "y"], ["one text", "two text"]), shard(["y"], ["three text"])]
    with pytest.raises(RepeatedIds, match=r"^1 records repeat an earlier record's id, e.g. id 'y' repeats the id "
                                          r"of an earlier record \(shard part-00000, row 1\)\. Give them unique"):
        dedup_shards(tables, TextDedupSettings(repeated_ids="fail"))
