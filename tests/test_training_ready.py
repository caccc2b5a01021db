"""A whole text run with token shards, a group cap and stratified splits (real Dask cluster and Prefect)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from tokenizers import Tokenizer

from conftest import E2E, e2e_config
from flows.config import load_config
from flows.curate import run_pipeline
from tasks import groups


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ready")
    data = e2e_config(str(E2E / "*.jsonl*"), str(tmp / "out"), balance={"by": ["meta.source"], "max_per_group": 3})
    data["export"].update(version="v1", tokenizer={"train": {"vocab_size": 400}},
                          splits={"train": 0.8, "validation": 0.1, "test": 0.1, "stratify_by": "meta.source"})
    (tmp / "config.yaml").write_text(yaml.safe_dump(data))
    summary = run_pipeline(load_config(tmp / "config.yaml"))
    folder = tmp / "out" / "versions" / "v1"
    return summary, folder, json.loads((folder / "manifest.json").read_text())


def test_the_cap_removes_rows_as_balance_cap_and_every_row_is_accounted_for(run):
    summary, _, manifest = run
    dedup, capped = summary["stages"]["dedup"], summary["stages"]["balance"]
    assert capped == {"in": 28, "kept": 26, "rejected": {"balance.cap": 2}, "quarantined": 0}
    assert capped["in"] == dedup["kept"] and summary["stages"]["export"]["in"] == capped["kept"] == summary["documents"]
    assert manifest["balance"]["caps"]["limit"] == 3
    assert {g: (o["rows"], o["keeps"]) for g, o in manifest["balance"]["caps"]["over"].items()} == {
        "perl-doc/perl-doc": (4, 3), "python-doc/python3.11-doc": (4, 3)}


def test_exported_groups_are_capped_and_small_groups_fill_train_first(run):
    summary, folder, manifest = run
    rows = pq.read_table([folder / s["path"] for split in manifest["splits"].values() for s in split["shards"]])
    per_group = Counter(groups.of(rows, "meta.source").tolist())
    assert max(per_group.values()) == 3 and per_group["perl-doc/perl-doc"] == 3
    # stratified by meta.source, every group has at most 3 rows: 10% of 3 rounds to 0, so all go to train
    assert summary["splits"] == {"train": 26, "validation": 0, "test": 0}
    reported = {r["group"]: r for r in manifest["balance"]["columns"]["meta.source"]}
    assert reported["perl-doc/perl-doc"]["rows"] == {"collect": 5, "preprocess": 5, "dedup": 4, "balance": 3}
    assert reported["perl-doc/perl-doc"]["removed"] == {"dedup.exact": 1, "balance.cap": 1}
    assert reported["perl-doc/perl-doc"]["wiped_by"] is None
    assert reported["apt-description/bookworm-Packages"]["rows"]["preprocess"] == 0


def test_token_shards_decode_back_to_the_exported_text(run):
    _, folder, manifest = run
    tokenizer = Tokenizer.from_file(str(folder / manifest["tokenizer"]["file"]))
    assert manifest["tokenizer"]["dtype"] == "uint16" and manifest["tokenizer"]["vocab_size"] == 400
    total = 0
    for split in manifest["splits"].values():
        split_tokens = 0
        for shard in split["shards"]:
            rows = pq.read_table(folder / shard["path"])
            tokens = np.load(folder / shard["tokens"], mmap_mode="r")
            offsets = np.load(folder / shard["offsets"])
            assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
            assert len(offsets) == rows.num_rows + 1 and offsets[-1] == len(tokens) == shard["n_tokens"]
            for i, (text, n) in enumerate(zip(rows["text"].to_pylist(), rows["n_tokens"].to_pylist())):
                ids = tokens[offsets[i]:offsets[i + 1]]
                assert len(ids) == n + 1 and ids[-1] == manifest["tokenizer"]["eos_id"]
                assert tokenizer.decode(ids[:-1].tolist()) == text
            split_tokens += len(tokens)
        assert split["tokens"] == split_tokens
        total += split_tokens
    assert total == sum(sum(r["n_tokens"] + 1 for r in pq.read_table(folder / s["path"], columns=["n_tokens"]).to_pylist())
                        for split in manifest["splits"].values() for s in split["shards"])


def test_card_and_report_show_tokens_and_balance(run):
    _, folder, _ = run
    card = (folder / "README.md").read_text()
    assert "## Tokens" in card and "## Balance" in card and "Caps on meta.source: at most 3 rows per group" in card
    report = (folder / "report.html").read_text()
    assert "Share of each meta.source group at every stage" in report and "balance.cap" in report
