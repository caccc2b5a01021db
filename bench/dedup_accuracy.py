"""Recall and precision of curate's near-duplicate removal against exact word-5-gram Jaccard.

    .venv/bin/python bench/dedup_accuracy.py [--docs 4000] [--planted 1000] [--threshold 0.8]

Ground truth is brute force: every document's set of word 5-grams (the shingle definition of
tasks/dedup/minhash.py: lower-cased runs of letters and digits), and the exact Jaccard of every pair of
documents, from the sparse product of the document x shingle matrix with itself (pairs sharing no shingle
have Jaccard 0). Beside the sample's natural duplicates, `--planted` edited copies of random documents
(a random fraction of their words replaced, spread so their Jaccard to the source covers 0.5-1.0) test
the region around the threshold.

- removals: recall is the share of documents with an earlier document at J >= threshold that curate
  removed; precision is the share of removed documents that have a document at J >= threshold in the
  cluster they were removed with;
- pairs: recall is the share of pairs at J >= threshold that curate put in one cluster; precision is the
  share of pairs in one cluster at J >= threshold (transitive chains count against it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.sparse import csr_matrix, triu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import SAMPLE  # noqa: E402
from tasks.dedup.steps import dedup_tables  # noqa: E402
from tasks.text.dedup import TextDedupSettings as DedupSettings  # noqa: E402

WORD = re.compile(r"[^\W_]+")


def shingle_sets(texts: list[str], n: int) -> list[set[str]]:
    out = []
    for text in texts:
        words = WORD.findall(text.lower())
        grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)] if len(words) >= n else (
            [" ".join(words)] if words else [])
        out.append(set(grams))
    return out


def jaccard_pairs(sets: list[set[str]], threshold: float) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every pair at or above `threshold`, by sparse matrix product."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for g in s:
            rows.append(i)
            cols.append(vocabulary.setdefault(g, len(vocabulary)))
    x = csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(sets), len(vocabulary)))
    inter = triu(x @ x.T, k=1).tocoo()
    size = np.array([len(s) for s in sets])
    j = inter.data / (size[inter.row] + size[inter.col] - inter.data)
    keep = j >= threshold
    return {(int(a), int(b)): float(v) for a, b, v in zip(inter.row[keep], inter.col[keep], j[keep])}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def planted_copies(texts: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Edited copies of distinct random documents of 50 words or more."""
    vocabulary = np.array(" ".join(texts[:500]).split())
    long_enough = [t for t in texts if len(t.split()) >= 50]
    out = []
    for source in rng.choice(len(long_enough), size=count, replace=False):
        words = np.array(long_enough[source].split())
        hit = rng.random(len(words)) < rng.uniform(0.0, 0.12)  # about J 1.0 down to 0.5 for 5-grams
        words[hit] = vocabulary[rng.integers(len(vocabulary), size=int(hit.sum()))]
        out.append(" ".join(words))
    return out


def evaluate(ids: list[str], texts: list[str], settings: DedupSettings, threshold: float) -> dict:
    started = time.perf_counter()
    sets = shingle_sets(texts, settings.ngram)
    truth = jaccard_pairs(sets, threshold)
    brute = time.perf_counter() - started
    started = time.perf_counter()
    (results,), _, stats = dedup_tables([pa.table({"id": ids, "text": texts})], settings)
    took = time.perf_counter() - started
    index = {d: i for i, d in enumerate(ids)}
    label = np.arange(len(ids))
    rejected = results[1].to_pylist()
    for r in rejected:
        label[index[r["id"]]] = index[r["duplicate_of"]]
    clusters: dict[int, list[int]] = {}
    for i, lab in enumerate(label):
        clusters.setdefault(int(lab), []).append(i)
    predicted = {pair for members in clusters.values() if len(members) > 1 for pair in combinations(sorted(members), 2)}
    neighbours: dict[int, set[int]] = {}
    for a, b in truth:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    duplicates = {b for _, b in truth}  # documents with an earlier document at J >= threshold
    removed = {index[r["id"]] for r in rejected}
    justified = sum(1 for d in removed if any(label[n] == label[d] for n in neighbours.get(d, ())))
    return {"documents": len(ids), "true_pairs": len(truth), "true_duplicates": len(duplicates),
            "removed": len(removed),
            "recall": len(removed & duplicates) / len(duplicates) if duplicates else 1.0,
            "precision": justified / len(removed) if removed else 1.0,
            "pair_recall": sum(1 for a, b in truth if label[a] == label[b]) / len(truth) if truth else 1.0,
            "pair_precision": sum(1 for p in predicted if p in truth) / len(predicted) if predicted else 1.0,
            "missed": [(ids[a], ids[b], round(j, 3)) for (a, b), j in truth.items() if label[a] != label[b]][:5],
            "stats": {k: v for k, v in stats.items() if k != "cluster_sizes"},
            "seconds": {"brute_force": round(brute, 1), "curate": round(took, 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--planted", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--bands", type=int)
    parser.add_argument("--rows", type=int)
    args = parser.parse_args()
    rows = [json.loads(line) for line in gzip.open(SAMPLE, "rt", encoding="utf-8")][: args.docs]
    ids, texts = [r["id"] for r in rows], [r["text"] for r in rows]
    settings = DedupSettings(threshold=args.threshold, verify=not args.no_verify, bands=args.bands, rows=args.rows)
    print(f"LSH bands x rows {settings.lsh()}, verify {settings.verify}")
    for name, (i, t) in {
        "sample": (ids, texts),
        f"sample + {args.planted} planted": (ids + [f"planted-{k}" for k in range(args.planted)],
                                             texts + planted_copies(texts, args.planted, np.random.default_rng(0))),
    }.items():
        r = evaluate(i, t, settings, args.threshold)
        print(f"{name}: {r['documents']} docs, {r['true_pairs']} pairs with J >= {args.threshold}, "
              f"{r['true_duplicates']} documents with an earlier one at J >= {args.threshold}, {r['removed']} removed\n"
              f"  removals: recall {r['recall']:.4f}, precision {r['precision']:.4f}; "
              f"pairs: recall {r['pair_recall']:.4f}, precision {r['pair_precision']:.4f} (in one cluster)\n"
              f"  {r['stats']}; {r['seconds']}")
        if r["missed"]:
            print(f"  missed (first 5): {r['missed']}")


if __name__ == "__main__":
    main()
