"""A benchmark corpus of real text at any size, built from ../shared/data/sample_text.jsonl.gz.

The sample's documents are cut into windows of about `words` words (real running text: man pages,
changelogs, manuals, plays...). Copies beyond the first pass have one word in eight replaced by another
word of the sample, so they are new documents as far as 5-gram shingles go (Jaccard to their source about
0.3), and `near_dup` of all documents are near copies of an earlier one (one word in a hundred replaced,
Jaccard about 0.9), so the dedup stage has real work. Deterministic for a given seed.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sample_text.jsonl.gz"


def windows(words: int) -> list[str]:
    out = []
    for line in gzip.open(SAMPLE, "rt", encoding="utf-8"):
        tokens = json.loads(line)["text"].split()
        for start in range(0, max(1, len(tokens) - words // 2), words):
            out.append(" ".join(tokens[start:start + words]))
    return out


def build(n_docs: int, words: int = 500, near_dup: float = 0.05, seed: int = 0) -> pa.Table:
    """`n_docs` documents (id, text): windows of the sample, altered copies, and planted near-duplicates."""
    rng = np.random.default_rng(seed)
    base = windows(words)
    vocabulary = np.array(" ".join(base[:2000]).split())
    texts = []
    for i in range(n_docs):
        if texts and rng.random() < near_dup:
            source, rate = texts[rng.integers(len(texts))], 100
        else:
            source, rate = base[i % len(base)], (8 if i >= len(base) else 0)
        tokens = np.array(source.split())
        if rate:
            hit = rng.random(len(tokens)) < 1 / rate
            tokens[hit] = vocabulary[rng.integers(len(vocabulary), size=int(hit.sum()))]
        texts.append(" ".join(tokens))
    return pa.table({"id": [f"b{i:07d}" for i in range(n_docs)], "text": texts})


def write_shards(table: pa.Table, directory: Path, rows: int, jsonl: Path | None = None) -> list[str]:
    """Parquet shards in the preprocess stage's record schema (for curate), optionally JSONL files alongside
    with the same split (for datatrove). Returns the shard names in order."""
    for d in (directory, jsonl):  # a previous run's extra shards would join this corpus
        if d:
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
    names = []
    for i, start in enumerate(range(0, table.num_rows, rows)):
        part = table.slice(start, rows)
        name = f"part-{i:05d}.parquet"
        n = part.num_rows
        pq.write_table(part.append_column("source", pa.array(["bench"] * n))
                       .append_column("source_index", pa.array(range(start, start + n), pa.int64()))
                       .append_column("meta", pa.array(["{}"] * n)), directory / name)
        if jsonl:
            with open(jsonl / f"part-{i:05d}.jsonl", "w", encoding="utf-8") as f:
                for row in part.to_pylist():
                    f.write(json.dumps(row) + "\n")
        names.append(name)
    return names
