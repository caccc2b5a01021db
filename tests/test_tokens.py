"""Token shards: the documents of each exported shard as token ids a training loop maps with NumPy."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from tasks.export import export_split
from tasks.export.splits import SplitSettings
from tasks.io.storage import Store
from tasks.text import TEXT, TextExportSettings, tokens

WORDS = {"<|endoftext|>": 0, "[UNK]": 1, "a": 2, "b": 3, "c": 4}


def word_level(vocab: dict[str, int]) -> bytes:
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer.to_str().encode()


def settings(tmp_path, data: bytes, **tokenizer) -> TextExportSettings:
    (tmp_path / "tokenizer.json").write_bytes(data)
    return TextExportSettings(shard_rows=3, splits=SplitSettings(train=1, validation=0, test=0),
                              tokenizer={"path": str(tmp_path / "tokenizer.json"), **tokenizer})


def test_tokenize_appends_the_end_token_and_counts_without_it(tmp_path):
    data = word_level(WORDS)
    found = tokens.identity(data, settings(tmp_path, data).tokenizer, "t.json")
    assert (found["eos"], found["eos_id"], found["dtype"], found["vocab_size"]) == ("<|endoftext|>", 0, "uint16", 5)
    table = tokens.tokenize(pa.table({"id": ["x", "y"], "text": ["a b", "c a zz"]}), data, found)
    assert table[tokens.N_TOKENS].to_pylist() == [2, 3]
    assert table[tokens.TOKEN_IDS].to_pylist() == [[2, 3, 0], [4, 2, 1, 0]]
    assert table[tokens.TOKEN_IDS].type == pa.large_list(pa.uint16())


def test_a_vocabulary_beyond_uint16_takes_uint32(tmp_path):
    big = {**WORDS, **{f"w{i}": 5 + i for i in range(2**16)}}
    data = word_level(big)
    found = tokens.identity(data, settings(tmp_path, data).tokenizer, "t.json")
    assert (found["vocab_size"], found["dtype"]) == (2**16 + 5, "uint32")
    table = tokens.tokenize(pa.table({"id": ["x"], "text": [f"w{2**16 - 1} a"]}), data, found)
    assert table[tokens.TOKEN_IDS].to_pylist() == [[2**16 + 4, 2, 0]]


def test_a_tokenizer_without_an_end_token_is_named(tmp_path):
    data = word_level({"[UNK]": 0, "a": 1})
    with pytest.raises(tokens.TokenizerError, match=r"t.json: has none of <\|endoftext\|>, </s>, .*export.tokenizer.eos"):
        tokens.identity(data, settings(tmp_path, data).tokenizer, "t.json")
    with pytest.raises(tokens.TokenizerError, match=r"t.json: has no token '<s>' \(export.tokenizer.eos\)"):
        tokens.identity(data, settings(tmp_path, data, eos="<s>").tokenizer, "t.json")
    with pytest.raises(tokens.TokenizerError, match="t.json: not a tokenizers tokenizer.json"):
        tokens.identity(b"{}", settings(tmp_path, data).tokenizer, "t.json")
    with pytest.raises(ValueError, match="exactly one of path"):
        tokens.TokenizerSettings(path="t.json", train={"vocab_size": 500})


def exported_documents(folder, shard: dict) -> list[list[int]]:
    flat = np.load(folder / shard["tokens"], mmap_mode="r")
    offsets = np.load(folder / shard["offsets"])
    return [flat[a:b].tolist() for a, b in zip(offsets, offsets[1:])], flat.dtype


def test_export_writes_token_shards_row_for_row_with_the_parquet(tmp_path):
    data = word_level(WORDS)
    config = settings(tmp_path, data)
    store = Store(str(tmp_path / "out"))
    texts = ["a", "b b", "c c c", "a b c a", "b", "c a", "a a a a a"]
    for i, part in enumerate((texts[:4], texts[4:])):
        table = pa.table({"id": [f"d{i}{j}" for j in range(len(part))], "text": part})
        found = tokens.identity(data, config.tokenizer, "t.json")
        store.write_table(tokens.tokenize(table, data, found), "in", f"p{i}.parquet")
    result = export_split(store, [("in", "p0.parquet"), ("in", "p1.parquet")], "train", config, "v1", TEXT)
    folder = tmp_path / "out" / "versions" / "v1"
    assert [s["rows"] for s in result["shards"]] == [3, 3, 1]
    assert [s["n_tokens"] for s in result["shards"]] == [3 + 2 + 4, 5 + 2 + 3, 6]
    assert result["shards"][0]["tokens"] == "train/part-00000.tokens.npy"
    assert result["stats"]["token_lengths"] == {"0-32": 7}
    decoded = []
    for shard in result["shards"]:
        rows = pq.read_table(folder / shard["path"])
        assert tokens.TOKEN_IDS not in rows.column_names
        documents, dtype = exported_documents(folder, shard)
        assert dtype == np.uint16
        inverse = {v: k for k, v in WORDS.items()}
        for text, n, ids in zip(rows["text"].to_pylist(), rows["n_tokens"].to_pylist(), documents):
            assert ids[-1] == 0 and len(ids) == n + 1
            assert " ".join(inverse[i] for i in ids[:-1]) == text
            decoded.append(text)
    assert sorted(decoded) == sorted(texts)


def test_the_document_order_is_seeded_and_independent_of_the_input_order():
    table = pa.table({"id": [f"d{i}" for i in range(50)], "text": ["a"] * 50})
    order = tokens.shuffled(table, 0)["id"].to_pylist()
    assert tokens.shuffled(table.take(list(range(49, -1, -1))), 0)["id"].to_pylist() == order
    assert tokens.shuffled(table, 1)["id"].to_pylist() != order
    assert order != table["id"].to_pylist() and sorted(order) == sorted(table["id"].to_pylist())


def test_a_trained_byte_level_bpe_decodes_back_to_the_text(tmp_path):
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "Ünïcödé — 字 and emoji 🙂 too", "tab\tand\nnewline  "]
    data = tokens.train(iter(texts * 20), tokens.TrainSettings(vocab_size=300, min_frequency=2))
    assert json.loads(data)["model"]["type"] == "BPE"
    found = tokens.identity(data, tokens.TokenizerSettings(train={"vocab_size": 300}), "trained")
    assert (found["eos"], found["eos_id"], found["dtype"]) == ("<|endoftext|>", 0, "uint16")
    table = tokens.tokenize(pa.table({"id": ["a", "b", "c"], "text": texts}), data, found)
    tokenizer = Tokenizer.from_str(data.decode())
    for text, ids in zip(texts, table[tokens.TOKEN_IDS].to_pylist()):
        assert ids[-1] == 0 and tokenizer.decode(ids[:-1]) == text
