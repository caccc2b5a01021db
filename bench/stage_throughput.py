"""Throughput of the per-shard stage functions on the real sample, one process, no orchestrator.

    .venv/bin/python bench/stage_throughput.py [N_COPIES]

Prints docs/s and MB/s for normalise, each preprocess rule family, and the dedup sketch (signatures,
band keys and content hashes).
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import pyarrow as pa

from tasks.dedup import sketch_shard
from tasks.text.dedup import TextDedupSettings
from tasks.text.preprocess import PreprocessSettings
from tasks.text.preprocess.c4 import filter_c4
from tasks.text.preprocess.gopher_quality import filter_gopher_quality
from tasks.text.preprocess.gopher_repetition import filter_gopher_repetition
from tasks.text.preprocess.language import filter_language
from tasks.text.preprocess.normalise import normalise
from tasks.text.preprocess.pii import redact_pii

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sample_text.jsonl.gz"


def main(copies: int) -> None:
    rows = [json.loads(line) for line in gzip.open(SAMPLE, "rt", encoding="utf-8")] * copies
    table = pa.table({"id": [f"{r['id']}-{i}" for i, r in enumerate(rows)], "text": [r["text"] for r in rows],
                      "source": ["sample"] * len(rows), "source_index": list(range(len(rows))),
                      "meta": ["{}"] * len(rows)})
    mb = sum(len(r["text"].encode()) for r in rows) / 1e6
    s = PreprocessSettings()
    print(f"{table.num_rows} documents, {mb:.1f} MB of text; every step on all of them")
    steps = [("normalise", lambda t: normalise(t, s.normalise)),
             ("language", lambda t: filter_language(t, s.language)),
             ("gopher_quality", lambda t: filter_gopher_quality(t, s.gopher_quality)),
             ("gopher_repetition", lambda t: filter_gopher_repetition(t, s.gopher_repetition)),
             ("c4", lambda t: filter_c4(t, s.c4)),
             ("pii", lambda t: redact_pii(t, s.pii)),
             ("dedup sketch", lambda t: sketch_shard(t, TextDedupSettings()))]
    for name, step in steps:
        started = time.perf_counter()
        step(table)
        took = time.perf_counter() - started
        print(f"{name:<20}{took:8.2f} s{table.num_rows / took:10.0f} docs/s{mb / took:8.1f} MB/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
