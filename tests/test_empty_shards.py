"""Every stage accepts an empty shard, and a shard that an early rule empties, for every modality."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tasks import modalities
from tasks.dedup.steps import dedup_tables
from tasks.export import export_split
from tasks.io.storage import Store
from tasks.text import TEXT
from tasks.text.preprocess import PreprocessSettings


def short_documents(n: int) -> pa.Table:
    return pa.Table.from_pylist([{"id": f"d{i}", "text": "too short", "source": "s", "source_index": i, "meta": "{}"}
                                 for i in range(n)], schema=TEXT.schema)


def test_a_shard_an_early_rule_empties_reaches_no_later_rule():
    """Before: filter_c4 raised IndexError on the empty table Gopher quality left."""
    kept, rejected = TEXT.preprocess_shard(short_documents(3), PreprocessSettings())
    assert kept.num_rows == 0 and rejected["rule"].to_pylist() == ["gopher_quality.min_doc_words"] * 3


@pytest.mark.parametrize("name", modalities.NAMES)
def test_every_stage_takes_an_empty_shard(name, tmp_path):
    modality = modalities.get(name)
    empty = modality.schema.empty_table()
    kept, rejected = modality.preprocess_shard(empty, modality.preprocess())
    assert kept.num_rows == 0 and rejected.num_rows == 0
    text = short_documents(2) if name == "text" else None
    tables = [kept] + ([modality.preprocess_shard(text, modality.preprocess())[0]] if text else [])
    results, _, stats = dedup_tables(tables, modality.dedup())
    assert [k.num_rows for k, _, _ in results] == [0] * len(tables) and stats["clusters"] == 0
    store = Store(str(tmp_path))
    store.write_table(results[0][0], "in", "part-00000.parquet")
    exported = export_split(store, [("in", "part-00000.parquet")], "train", modality.export(), "v1", modality)
    assert (exported["rows"], exported["shards"]) == (0, [])
