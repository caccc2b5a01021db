"""Groups, stratified caps and stratified splits, on small tables with known answers."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from tasks import groups
from tasks.export import balance, balance_report
from tasks.export.balance import BalanceSettings
from tasks.export.splits import SplitSettings, assign_splits, quotas, stratified_cuts, with_splits
from tasks.io.storage import Store


def records(sizes: dict[str, int], quality: bool = False) -> pa.Table:
    """Rows `<group>-<i>` whose meta.category is their group; quality i (higher for later rows)."""
    ids = [f"{g}-{i}" for g, n in sizes.items() for i in range(n)]
    meta = [json.dumps({"category": g, "n": i}) for g, n in sizes.items() for i in range(n)]
    table = pa.table({"id": ids, "meta": meta})
    return table.append_column("score", pa.array([float(i) for n in sizes.values() for i in range(n)])) if quality else table


def test_groups_of_a_column_or_a_meta_path():
    table = pa.table({"id": ["a", "b", "c", "d"], "lang": ["en", None, "fr", "en"],
                      "meta": [json.dumps({"x": {"y": "deep"}}), json.dumps({"x": {"y": 3}}), None, "{}"]})
    assert groups.of(table, "lang").tolist() == ["en", "(none)", "fr", "en"]
    assert groups.of(table, "meta.x.y").tolist() == ["deep", "3", "(none)", "(none)"]
    assert groups.of(table, "speaker").tolist() == ["(none)"] * 4
    assert groups.counts(table, ["lang"]) == {"lang": {"en": 2, "(none)": 1, "fr": 1}}


def test_cap_limit_keeps_every_group_within_its_share_of_what_is_left():
    assert balance.cap_limit([60, 30, 10], 0.5, None) == 40       # 40 of 40 + 30 + 10 = 80 is 0.5
    assert balance.cap_limit([60, 30, 10], None, 25) == 25
    assert balance.cap_limit([60, 30, 10], 0.5, 25) == 25
    assert balance.cap_limit([60, 30, 10], 1.0, None) == 60
    assert balance.cap_limit([5, 5], 0.4, None) == 0              # two groups cannot each be at most 40%


def plan_over_shards(tmp_path, table: pa.Table, settings: BalanceSettings, cut: int):
    store = Store(str(tmp_path))
    store.write_table(table.slice(0, cut), "in", "a.parquet")
    store.write_table(table.slice(cut), "in", "b.parquet")
    decided = balance.plan(store, [("in", "a.parquet"), ("in", "b.parquet")], settings)
    kept, rejected = zip(*(balance.capped(store.read_table("in", f), settings, decided) for f in ("a.parquet", "b.parquet")))
    return decided, pa.concat_tables(kept), pa.concat_tables(rejected)


def test_caps_remove_the_excess_of_each_group_deterministically_and_account_for_it(tmp_path):
    table = records({"news": 60, "code": 30, "poetry": 10})
    settings = BalanceSettings(by=["meta.category"], max_share=0.5, seed=7)
    decided, kept, rejected = plan_over_shards(tmp_path, table, settings, 45)
    assert (decided["limit"], decided["over"]["news"]["rows"], decided["over"]["news"]["keeps"]) == (40, 60, 40)
    assert groups.counts(kept, ["meta.category"]) == {"meta.category": {"news": 40, "code": 30, "poetry": 10}}
    assert kept.num_rows + rejected.num_rows == 100 and rejected.num_rows == 20
    assert set(rejected["rule"].to_pylist()) == {"balance.cap"}
    assert rejected["reason"][0].as_py() == "balance.cap: meta.category=news has 60 rows, keeps 40 (max_share 0.5)"
    # the same rows whatever the shards, a different seed keeps different ones
    _, again, _ = plan_over_shards(tmp_path / "other", table, settings, 13)
    assert sorted(again["id"].to_pylist()) == sorted(kept["id"].to_pylist())
    _, reseeded, _ = plan_over_shards(tmp_path / "seed", table, settings.model_copy(update={"seed": 8}), 45)
    assert sorted(reseeded["id"].to_pylist()) != sorted(kept["id"].to_pylist())


def test_caps_keep_the_highest_quality_rows_first(tmp_path):
    settings = BalanceSettings(cap_by="meta.category", max_per_group=3, quality="score")
    _, kept, rejected = plan_over_shards(tmp_path, records({"a": 5, "b": 2}, quality=True), settings, 3)
    assert sorted(kept["id"].to_pylist()) == ["a-2", "a-3", "a-4", "b-0", "b-1"]
    assert sorted(rejected["id"].to_pylist()) == ["a-0", "a-1"]
    assert rejected["reason"][0].as_py() == "balance.cap: meta.category=a has 5 rows, keeps 3 (max_per_group 3)"


def test_a_share_no_group_can_meet_is_an_error_that_says_why(tmp_path):
    with pytest.raises(balance.CapsLeaveNothing, match="meta.category has 2 groups, and shares of at most 0.4 take at least 3"):
        plan_over_shards(tmp_path, records({"a": 5, "b": 5}), BalanceSettings(by=["meta.category"], max_share=0.4), 4)
    with pytest.raises(ValueError, match="name it in by or cap_by"):
        BalanceSettings(max_per_group=3)
    with pytest.raises(balance.BalanceError, match="balance.quality names column 'stars', which the records do not have"):
        plan_over_shards(tmp_path / "q", records({"a": 5}), BalanceSettings(by=["meta.category"], max_per_group=2,
                                                                         quality="stars"), 2)


def test_quotas_round_the_fractions_and_fill_train_first():
    splits = SplitSettings(train=0.8, validation=0.1, test=0.1)
    assert quotas(100, splits) == (80, 10, 10)
    assert quotas(20, splits) == (16, 2, 2)
    assert quotas(1, splits) == (1, 0, 0)
    assert quotas(2, SplitSettings(train=0.2, validation=0.4, test=0.4)) == (1, 1, 0)  # test gives way first
    assert quotas(0, splits) == (0, 0, 0)


def test_stratified_splits_give_every_group_its_share(tmp_path):
    table = records({"big": 100, "small": 20, "single": 1})
    store = Store(str(tmp_path))
    store.write_table(table.slice(0, 50), "in", "a.parquet")
    store.write_table(table.slice(50), "in", "b.parquet")
    splits = SplitSettings(train=0.8, validation=0.1, test=0.1, stratify_by="meta.category")
    cuts = stratified_cuts(store, [("in", "a.parquet"), ("in", "b.parquet")], splits)
    split = with_splits(table, splits, cuts)
    found = {(g, s): 0 for g in ("big", "small", "single") for s in ("train", "validation", "test")}
    for g, s in zip(groups.of(split, "meta.category"), split["split"].to_pylist()):
        found[g, s] += 1
    assert found == {("big", "train"): 80, ("big", "validation"): 10, ("big", "test"): 10,
                     ("small", "train"): 16, ("small", "validation"): 2, ("small", "test"): 2,
                     ("single", "train"): 1, ("single", "validation"): 0, ("single", "test"): 0}
    # without stratification the fractions only hold on average: here the small group gets no validation row
    plain = assign_splits(table["id"], SplitSettings(train=0.8, validation=0.1, test=0.1))
    assert [int(np.sum(plain[100:120] == s)) for s in ("train", "validation", "test")] == [17, 0, 3]


def test_summary_flags_a_group_one_rule_removed_entirely():
    shard = {"stages": {"collect": {"lang": {"en": 6, "fr": 2}}, "preprocess": {"lang": {"en": 4}},
                        "dedup": {"lang": {"en": 3}}},
             "removed": {"preprocess": {"lang": {"language.allowed": {"fr": 2}, "c4.min_num_sentences": {"en": 2}}},
                         "dedup": {"lang": {"dedup.exact": {"en": 1}}}},
             "splits": {"train": {"lang": {"en": 3}}}}
    merged = balance.merged(shard, shard)  # two shards alike
    rows = balance_report.summarize(merged, ["collect", "preprocess", "dedup"], ["lang"])["lang"]
    assert [(r["group"], r["rows"], r["removed"], r["wiped_by"]) for r in rows] == [
        ("en", {"collect": 12, "preprocess": 8, "dedup": 6}, {"c4.min_num_sentences": 4, "dedup.exact": 2}, None),
        ("fr", {"collect": 4, "preprocess": 0, "dedup": 0}, {"language.allowed": 4}, "language.allowed")]
    assert rows[0]["shares"] == {"collect": 0.75, "preprocess": 1.0, "dedup": 1.0}
    assert rows[0]["splits"] == {"train": 6, "validation": 0, "test": 0}
    assert "| fr | 4 (25.0%) | 0 (0.0%) | 0 (0.0%) | 0 / 0 / 0 | WIPED OUT by language.allowed; language.allowed 4 |" in \
        balance_report.markdown({"stages": ["collect", "preprocess", "dedup"], "columns": {"lang": rows}, "caps": None}, "documents")
