"""The quality classifier's `keep_top`: keep the best-scored share of the documents left after dedup, across
every shard, as DCLM keeps the top 10% of its deduplicated text by a fastText score.

The cut needs every score at once, so `plan` reads only the `quality_score` column of every shard (8 bytes a
document) and finds the score of the last document kept; `cut` then removes what scores below it from each
shard, rule `quality_classifier.keep_top`. Documents tied at the cut are all kept.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from tasks.io.storage import Store
from tasks.records import Check, split_by_checks

RULE = "quality_classifier.keep_top"
COLUMN = "quality_score"


def plan(store: Store, inputs: list[tuple[str, ...]], keep_top: float) -> dict:
    """The lowest score kept when `keep_top` of the documents in `inputs` stay."""
    tables = [store.read_present(*parts, columns=[COLUMN]) for parts in inputs]
    scores = np.concatenate([np.asarray(t[COLUMN], dtype=np.float64) for t in tables if COLUMN in t.column_names]
                            or [np.zeros(0)])
    keeps = math.ceil(keep_top * len(scores) - 1e-9)
    lowest = float(-np.partition(-scores, keeps - 1)[keeps - 1]) if keeps else math.inf
    return {"keep_top": keep_top, "documents": len(scores), "keeps": keeps, "min_score": lowest}


def cut(table: pa.Table, decided: dict) -> tuple[pa.Table, pa.Table]:
    if not table.num_rows:
        return split_by_checks(table, [])
    scores = np.asarray(table[COLUMN], dtype=np.float64)
    return split_by_checks(table, [Check(
        RULE, scores < decided["min_score"], np.array([f"{s:.3f}" for s in scores], dtype=object),
        f"< {decided['min_score']:.3f} (keep_top {decided['keep_top']:g} of {decided['documents']:,} documents)")])
