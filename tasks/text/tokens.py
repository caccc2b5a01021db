"""Tokenized export: the documents of each exported shard as one flat array of token ids, each document
followed by the end-of-document token, and the offsets where documents start; the layout training loops
read with `np.load(..., mmap_mode="r")`.

The tokenizer is a Hugging Face `tokenizers` file given by path, or a byte-level BPE trained on the
version's train split; either way it is saved with the version and named by its sha256. Tokenizing is a
task per shard (`tokenize`); export then only flattens the lists of the rows it writes (`finish_shard`).
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tasks.export.splits import id_hashes, with_splits
from tasks.io import layout
from tasks.io.storage import Store
from tasks.records import Settings

TOKEN_IDS = "token_ids"   # the tokenize step's column: a document's ids and its end token; never exported
N_TOKENS = "n_tokens"     # the exported column: a document's token count, without the end token
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")
TRAINED_EOS = "<|endoftext|>"
LENGTH_EDGES = (0, 32, 128, 512, 2_048, 8_192, 32_768)  # tokens per document
LENGTH_BINS = tuple(f"{lo:,}-{hi:,}" for lo, hi in zip(LENGTH_EDGES, LENGTH_EDGES[1:])) + (f">={LENGTH_EDGES[-1]:,}",)


class TrainSettings(Settings):
    vocab_size: int = Field(32_000, ge=300, le=2**32, description="tokens in the vocabulary, the end token included")
    min_frequency: int = Field(2, ge=1, description="a pair merges only if it occurs this often")


class TokenizerSettings(Settings):
    path: str | None = Field(None, description="a local tokenizer.json (Hugging Face tokenizers); never downloaded")
    train: TrainSettings | None = Field(None, description="train a byte-level BPE on the version's train split")
    eos: str | None = Field(None, description=f"end-of-document token; default: the first of {', '.join(EOS_CANDIDATES)} "
                                              "the tokenizer knows")
    seed: int = Field(0, ge=0, description="seed of the document order inside each shard")

    @model_validator(mode="after")
    def _one_origin(self) -> TokenizerSettings:
        if (self.path is None) == (self.train is None):
            raise ValueError("give exactly one of path (a tokenizer.json) and train ({vocab_size: ...})")
        return self


class TokenizerError(ValueError):
    """The tokenizer cannot be used: unreadable, no end-of-document token, or not the base version's."""


def identity(data: bytes, settings: TokenizerSettings, origin: str) -> dict:
    """What the manifest says of a tokenizer: its hash, vocabulary, end token and the dtype of its shards."""
    tokenizer = parse(data, origin)
    eos = settings.eos or next((t for t in EOS_CANDIDATES if tokenizer.token_to_id(t) is not None), None)
    if eos is None or tokenizer.token_to_id(eos) is None:
        raise TokenizerError(f"{origin}: " + (f"has no token {eos!r} (export.tokenizer.eos)" if eos else
                             f"has none of {', '.join(EOS_CANDIDATES)}; name its end-of-document token in "
                             "export.tokenizer.eos"))
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    return {"sha256": hashlib.sha256(data).hexdigest(), "origin": origin, "vocab_size": vocab, "eos": eos,
            "eos_id": tokenizer.token_to_id(eos), "dtype": "uint16" if vocab <= 2**16 else "uint32",
            "file": "tokenizer.json"}


def parse(data: bytes, origin: str) -> Tokenizer:
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # the Rust side raises plain Exceptions naming the JSON problem
        raise TokenizerError(f"{origin}: not a tokenizers tokenizer.json ({e})") from None


def read_local(path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise TokenizerError(f"export.tokenizer.path {path}: {e.strerror or e}") from None


def train(texts, settings: TrainSettings) -> bytes:
    """A byte-level BPE (GPT-2's scheme: any text encodes, decoding gives it back exactly) trained on
    `texts`, an iterable of strings; returns its tokenizer.json."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=settings.vocab_size, min_frequency=settings.min_frequency,
                                  special_tokens=[TRAINED_EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer.to_str().encode("utf-8")


def prepare(store: Store, inputs: list[tuple[str, ...]], version: str, settings, base: dict | None,
            cuts: dict | None = None) -> dict:
    """Save the tokenizer in version `version` and return its identity: the base version's when this one
    stacks on a tokenized version (one version, one tokenizer), else the file at `path`, else a BPE trained on
    the train split of `inputs` (the shards export reads)."""
    wanted = settings.tokenizer
    if base and base.get("tokenizer"):
        data = store.read_bytes(*layout.version(base["version"], base["tokenizer"]["file"]))
        origin = base["tokenizer"]["origin"]
        if wanted.path and hashlib.sha256(read_local(wanted.path)).hexdigest() != base["tokenizer"]["sha256"]:
            raise TokenizerError(f"export.tokenizer.path {wanted.path} is not the tokenizer of base version "
                                 f"{base['version']} ({base['tokenizer']['sha256'][:12]}): a version's shards share "
                                 "one tokenizer; start a new dataset to change it")
    elif wanted.path:
        data, origin = read_local(wanted.path), wanted.path
    else:
        data = train(train_texts(store, inputs, settings, cuts), wanted.train)
        origin = f"byte-level BPE trained on the train split of version {version}"
    found = identity(data, wanted, origin)
    store.write_bytes(data, *layout.version(version, found["file"]))
    return found


def train_texts(store: Store, inputs: list[tuple[str, ...]], settings, cuts: dict | None):
    """The texts of the train split (`cuts`: stratified, tasks.export.splits), shard by shard."""
    for parts in inputs:
        table = with_splits(store.read_table(*parts), settings.splits, cuts).select(["split", "text"])
        yield from table.filter(pc.equal(table["split"], "train"))["text"].to_pylist()


@lru_cache(maxsize=4)
def cached(data: bytes) -> Tokenizer:
    """One parsed tokenizer per worker process, not one per shard."""
    return parse(data, "tokenizer.json")


def tokenize(table: pa.Table, data: bytes, tokenizer_id: dict) -> pa.Table:
    """`table` with the token ids of each document, its end token appended (TOKEN_IDS), and its count
    (N_TOKENS); encoding runs in the tokenizer's threads, over the whole batch."""
    encodings = cached(data).encode_batch_fast(table["text"].to_pylist(), add_special_tokens=False)
    dtype = np.dtype(tokenizer_id["dtype"])
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=offsets[1:])
    flat = np.full(offsets[-1], tokenizer_id["eos_id"], dtype=dtype)
    for encoding, start, n in zip(encodings, offsets, lengths):
        flat[start:start + n] = encoding.ids
    ids = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat))
    return table.append_column(N_TOKENS, pa.array(lengths, pa.int32())).append_column(TOKEN_IDS, ids)


def shuffled(table: pa.Table, seed: int) -> pa.Table:
    """The rows in a seeded order that depends only on their ids: the same documents, the same order."""
    return table.take(pa.array(np.argsort(id_hashes(table["id"], "curate-order-001", seed), kind="stable")))


def finish_shard(table: pa.Table, settings) -> tuple[pa.Table, dict[str, bytes], dict]:
    """The export of a shard with TOKEN_IDS: its rows shuffled, the ids written as `<shard>.tokens.npy`
    (flat) and `<shard>.offsets.npy` (int64, documents + 1: document i, row i of the Parquet shard, is
    tokens[offsets[i]:offsets[i+1]], its end token last), and the column dropped from the Parquet. The
    shard's entry counts its tokens, end tokens included."""
    if TOKEN_IDS not in table.column_names:
        return table, {}, {}
    table = shuffled(table, settings.tokenizer.seed)
    ids = table[TOKEN_IDS].combine_chunks()
    flat = np.asarray(ids.flatten())
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.asarray(pc.list_value_length(ids), dtype=np.int64), out=offsets[1:])
    return (table.drop_columns([TOKEN_IDS]), {"tokens.npy": npy(flat), "offsets.npy": npy(offsets)},
            {N_TOKENS: int(len(flat))})


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def length_bins(n_tokens: pa.ChunkedArray) -> dict:
    """Documents per token-count bin (LENGTH_BINS)."""
    at = np.searchsorted(LENGTH_EDGES, np.asarray(n_tokens, dtype=np.int64), side="right") - 1
    return {LENGTH_BINS[i]: int(n) for i, n in enumerate(np.bincount(at, minlength=len(LENGTH_BINS))) if n}
