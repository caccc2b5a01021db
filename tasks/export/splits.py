"""Splits: each record's split from a stable hash of its id, so the same id lands in the same split in
every run; or, with `stratify_by`, from its rank by that hash inside its group, so every group has the same
share in train, validation and test (a group too small for all three fills train first)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from tasks import groups
from tasks.io.storage import Store
from tasks.records import Settings

SPLITS = ("train", "validation", "test")


class SplitSettings(Settings):
    train: float = Field(0.98, ge=0, le=1, description="share of records in train")
    validation: float = Field(0.01, ge=0, le=1, description="share of records in validation")
    test: float = Field(0.01, ge=0, le=1, description="share of records in test")
    stratify_by: str | None = Field(None, description=(
        "a column (or meta.field) whose groups keep the same share in every split; the split of an id may then "
        "change between runs as its group grows"))

    @model_validator(mode="after")
    def _sum_to_one(self):
        total = self.train + self.validation + self.test
        if abs(total - 1) > 1e-9:
            raise ValueError(f"split fractions must add up to 1, they add up to {total:g}")
        return self


def id_hashes(ids, hash_key: str, seed: int | None = None) -> np.ndarray:
    """A stable 64-bit hash per id (SipHash keyed by `hash_key`, 16 characters), under `seed` when given:
    what splits, caps and the token shards' order take, so they never depend on where a record sits."""
    if seed is not None:
        ids = pc.binary_join_element_wise(str(seed), ids, ":")
    return pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=hash_key, categorize=False)


def positions(ids) -> np.ndarray:
    """A stable number in [0, 1) per id."""
    return id_hashes(ids, "curate-splits-01").astype(np.float64) / 2.0**64


def assign_splits(ids, splits: SplitSettings, group: np.ndarray | None = None, cuts: dict | None = None) -> np.ndarray:
    """Split name per id: below the first cut train, below the second validation, else test. The cuts are
    the fractions, or with `cuts` ({group: [first, second]}) those of each row's `group`."""
    u = positions(ids)
    names = list(cuts or {})
    table = np.array([cuts[name] for name in names] + [[splits.train, splits.train + splits.validation]])
    at = pd.Index(names, dtype=object).get_indexer(group) if names else np.full(len(u), -1)
    first, second = table[at, 0], table[at, 1]  # -1: the last row, the fractions
    return np.where(u < first, "train", np.where(u < second, "validation", "test"))


def with_splits(table: pa.Table, splits: SplitSettings, cuts: dict | None = None) -> pa.Table:
    group = groups.of(table, splits.stratify_by) if cuts is not None else None
    return table.append_column("split", pa.array(assign_splits(table["id"], splits, group, cuts), pa.string()))


def quotas(n: int, splits: SplitSettings) -> tuple[int, int, int]:
    """Rows of a group of `n` in train, validation and test: the fractions rounded, train first (a group
    of one row is all train)."""
    validation, test = round(n * splits.validation), round(n * splits.test)
    while splits.train and n and validation + test > n - 1:
        if test >= validation:
            test -= 1
        else:
            validation -= 1
    return n - validation - test, validation, test


def stratified_cuts(store: Store, inputs: list[tuple[str, ...]], splits: SplitSettings) -> dict:
    """{group: [first cut, second cut]} such that each group's rows split by its quotas: the cut is the
    position of the first row past a split. Reads the id and the stratify column of every input shard."""
    columns = ["id", *groups.source_columns([splits.stratify_by])]
    tables = [store.read_present(*p, columns=columns) for p in inputs]
    group = np.concatenate([groups.of(t, splits.stratify_by) for t in tables] or [np.array([], dtype=object)])
    u = np.concatenate([positions(t["id"]) for t in tables] or [np.array([])])
    codes, names = pd.factorize(group)
    ranked = u[np.lexsort((u, codes))]  # by group, then position
    sizes = np.bincount(codes, minlength=len(names))
    starts = np.cumsum(sizes) - sizes
    cuts = {}
    for name, start, n in zip(names.tolist(), starts.tolist(), sizes.tolist()):
        train, validation, _ = quotas(n, splits)
        cuts[name] = [float(ranked[start + k]) if k < n else 1.0 for k in (train, train + validation)]
    return cuts
