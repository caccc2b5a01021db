"""Tokens per second per core of the tokenize step (tasks.text.tokens.tokenize), on the real sample.

    RAYON_NUM_THREADS=1 .venv/bin/python bench/tokenize_throughput.py [VOCAB_SIZE] [COPIES]

Trains a byte-level BPE of VOCAB_SIZE (default 32,000) on the sample's 3,413 documents (timed too), then
tokenizes COPIES (default 3) copies of them as one shard: what one task does on one worker. RAYON_NUM_THREADS
is the tokenizer's thread count; 1 gives the per-core figure, unset uses every core.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.text import tokens  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sample_text.jsonl.gz"


def main() -> None:
    vocab = int(sys.argv[1]) if len(sys.argv) > 1 else 32_000
    copies = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    texts = [json.loads(line)["text"] for line in gzip.open(SAMPLE, "rt", encoding="utf-8")]
    started = time.perf_counter()
    data = tokens.train(iter(texts), tokens.TrainSettings(vocab_size=vocab))
    print(f"trained a byte-level BPE of {vocab:,} on {len(texts):,} documents "
          f"({sum(map(len, texts)) / 1e6:.1f} M characters) in {time.perf_counter() - started:.1f} s")
    found = tokens.identity(data, tokens.TokenizerSettings(train={"vocab_size": vocab}), "bench")
    table = pa.table({"id": [f"d{i}" for i in range(len(texts) * copies)], "text": texts * copies})
    tokens.tokenize(table.slice(0, 10), data, found)  # parse the tokenizer once, as a worker has
    started = time.perf_counter()
    out = tokens.tokenize(table, data, found)
    seconds = time.perf_counter() - started
    n = int(pa.compute.sum(out[tokens.N_TOKENS]).as_py())
    threads = os.environ.get("RAYON_NUM_THREADS", f"all {os.cpu_count()}")
    print(f"tokenized {table.num_rows:,} documents into {n:,} tokens in {seconds:.2f} s with {threads} thread(s): "
          f"{n / seconds:,.0f} tokens/s, {table.num_rows / seconds:,.0f} docs/s ({found['dtype']})")


if __name__ == "__main__":
    main()
