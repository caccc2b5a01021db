"""Semantic dedup, measured: on the shared sample, the documents it removes beyond what exact and MinHash
dedup remove, with the pairs side by side for a person to judge the threshold; then, on a generated corpus
(bench/scale_corpus.py, under /tmp), the documents per second of fitting, embedding and clustering, one core.

    .venv/bin/python -m bench.semantic_dedup [DOCS] [PAIRS_SHOWN]
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.corpus import SAMPLE
from bench.scale_corpus import write_corpus
from tasks.dedup.steps import dedup_tables
from tasks.text.dedup import TextDedupSettings
from tasks.text.semantic import SemanticDedupSettings, duplicates, train

CORPUS = Path("/tmp/curate-bench/semantic")


def beyond_minhash(shown: int) -> None:
    texts = [json.loads(line)["text"] for line in gzip.open(SAMPLE, "rt", encoding="utf-8")]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    ((kept, removed, _),), _, _ = dedup_tables([table], TextDedupSettings())
    settings = SemanticDedupSettings(enabled=True)
    column = kept["text"].combine_chunks()
    found = duplicates(train(column, settings).embed(column), np.zeros(kept.num_rows), settings)
    print(f"shared sample: {len(texts):,} documents; exact + MinHash remove {removed.num_rows}; semantic dedup at "
          f"cosine >= {settings.threshold} removes {len(found['removed'])} more")
    rows = kept["text"].to_pylist()
    for i in np.random.default_rng(1).permutation(len(found["removed"]))[:shown]:
        print(f"--- cosine {found['cosine'][i]:.4f}\n  kept:    {rows[found['kept'][i]][:150]!r}\n"
              f"  removed: {rows[found['removed'][i]][:150]!r}")


def throughput(docs: int) -> None:
    write_corpus(CORPUS, docs, files=4)
    texts = pa.array([json.loads(line)["text"] for path in sorted((CORPUS / "docs").glob("*.jsonl"))
                      for line in open(path, encoding="utf-8")])
    settings = SemanticDedupSettings(enabled=True)
    started = time.perf_counter()
    embedder = train(texts[:settings.sample], settings)
    fitted = time.perf_counter()
    vectors = np.concatenate([embedder.embed(texts[i:i + 10_000]) for i in range(0, len(texts), 10_000)])
    embedded = time.perf_counter()
    found = duplicates(vectors, np.zeros(len(texts)), settings)
    clustered = time.perf_counter()
    print(f"{len(texts):,} generated documents: fit on {min(len(texts), settings.sample):,} in "
          f"{fitted - started:.1f} s; embed {len(texts) / (embedded - fitted):,.0f} docs/s; k-means and pairs "
          f"({found['clusters']} clusters) {len(texts) / (clustered - embedded):,.0f} docs/s; removed "
          f"{len(found['removed']):,}")


if __name__ == "__main__":
    beyond_minhash(int(sys.argv[2]) if len(sys.argv) > 2 else 12)
    throughput(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
