"""Balance: how each group of a column (a source, a language, `meta.category`) fares through the run, and
stratified caps that keep any group from dominating the export.

Counting is per shard (`count_shard`); caps need every shard's groups at once, so `plan` reads the few
columns it needs from all shards and decides, per group over its cap, the last row kept in a seeded order
(best `quality` first when one is named); `capped` then removes the rows past it, rule `balance.cap`.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from tasks import groups
from tasks.export.splits import SplitSettings, id_hashes, with_splits
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.records import Settings, StageCounts

RULE = "balance.cap"


class BalanceError(ValueError):
    """The caps cannot be applied as configured; the message names the key and why."""


class CapsLeaveNothing(BalanceError):
    """max_share is below 1 / (number of groups): no row could stay."""


class BalanceSettings(Settings):
    by: list[str] = Field(default_factory=list, description=(
        "columns whose groups the report and card show at every stage: source, lang, format, speaker, or a "
        "field of the source's other fields by its dotted path, meta.category"))
    max_share: float | None = Field(None, gt=0, le=1, description="a group of cap_by may be at most this share of the export")
    max_per_group: int | None = Field(None, ge=1, description="a group of cap_by keeps at most this many rows")
    cap_by: str | None = Field(None, description="the column the caps apply to; default: the first of `by`")
    quality: str | None = Field(None, description="numeric column: a capped group keeps its highest values first")
    seed: int = Field(0, ge=0, description="seed of the order in which a capped group keeps rows (after quality)")

    @model_validator(mode="after")
    def _caps_name_a_column(self) -> BalanceSettings:
        if self.caps and not (self.cap_by or self.by):
            raise ValueError("max_share and max_per_group cap the groups of a column: name it in by or cap_by")
        return self

    @property
    def caps(self) -> bool:
        return self.max_share is not None or self.max_per_group is not None

    @property
    def cap_column(self) -> str:
        return self.cap_by or self.by[0]


def count_shard(store: Store, paths: RunPaths, shard: str, columns: list[str], stages: list[str],
                splits: SplitSettings, cuts: dict | None) -> dict:
    """What the report shows of one shard, per column: the groups' rows kept by each stage, removed by each
    rule of each stage, and exported to each split (the last stage's rows are what export splits):
    {"stages": {stage: {column: {group: rows}}}, "removed": {stage: {column: {rule: {group: rows}}}},
    "splits": {split: {column: {group: rows}}}}."""
    wanted = ["id", "rule", *groups.source_columns(columns)]

    def read(parts):
        if not store.exists(*parts):
            return None
        return store.read_present(*parts, columns=wanted)

    out = {"stages": {}, "removed": {}}
    for stage in stages:
        kept = read(paths.stage(stage, shard))
        out["stages"][stage] = groups.counts(kept, columns) if kept is not None else {}
        if stage != stages[0]:
            out["removed"][stage] = removed(read(paths.rejected(stage, shard)), columns)
    split = with_splits(kept, splits, cuts)["split"].to_numpy(zero_copy_only=False) if kept is not None else []
    out["splits"] = {name: groups.counts(kept.filter(pa.array(split == name)), columns)
                     for name in set(split)} if kept is not None else {}
    return out


def merged(a: dict, b: dict) -> dict:
    """Two `count_shard` results (or merges of them) added up, key by key."""
    out = dict(a)
    for key, value in b.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else out.get(key, 0) + value
    return out


def removed(rejected: pa.Table | None, columns: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """{column: {rule: {group: rows}}} of a stage's rejected rows."""
    if rejected is None or not rejected.num_rows:
        return {c: {} for c in columns}
    rules = np.asarray(rejected["rule"].to_pylist(), dtype=object)
    out = {}
    for c in columns:
        found: dict[str, Counter] = {}
        for rule, group in zip(rules, groups.of(rejected, c)):
            found.setdefault(rule, Counter())[group] += 1
        out[c] = {rule: dict(n) for rule, n in found.items()}
    return out


def cap_limit(sizes: list[int], max_share: float | None, max_per_group: int | None) -> int:
    """The most rows any group keeps: the largest C with C <= max_share * sum(min(n, C)) (no group above its
    share of what is left), and at most `max_per_group`. `C - share * sum(min(n, C))` is convex and 0 at 0,
    so the Cs that satisfy it form one interval from 0, found by bisection."""
    top = min(max(sizes, default=0), max_per_group or max(sizes, default=0))
    if max_share is None or max_share >= 1:
        return top
    n = np.asarray(sizes, dtype=np.int64)
    fits = lambda c: c <= max_share * np.minimum(n, c).sum() + 1e-9
    low, high = 0, top
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def order_keys(table: pa.Table, settings: BalanceSettings) -> tuple[np.ndarray, np.ndarray]:
    """(negated quality, seeded id hash) per row: the lexicographically smaller row is kept first."""
    hashes = id_hashes(table["id"], "curate-balance01", settings.seed)
    if not settings.quality:
        return np.zeros(table.num_rows), hashes
    if settings.quality not in table.column_names:
        raise BalanceError(f"balance.quality names column {settings.quality!r}, which the records do not have "
                         f"(columns: {', '.join(table.column_names)})")
    quality = np.asarray(pc.fill_null(pc.cast(table[settings.quality], pa.float64()), -np.inf), dtype=np.float64)
    return -np.nan_to_num(quality, nan=-np.inf), hashes


def plan(store: Store, inputs: list[tuple[str, ...]], settings: BalanceSettings) -> dict:
    """For each group of the cap column over its cap: how many rows it has, how many it keeps, and the key of
    the last row it keeps. Reads only the id, the cap column and the quality column of each shard."""
    columns = ["id", *groups.source_columns([settings.cap_column] + ([settings.quality] if settings.quality else []))]
    parts = [store.read_present(*p, columns=columns) for p in inputs]
    group = np.concatenate([groups.of(t, settings.cap_column) for t in parts] or [np.array([], dtype=object)])
    keys = [order_keys(t, settings) for t in parts]
    first = np.concatenate([k[0] for k in keys] or [np.array([])])
    second = np.concatenate([k[1] for k in keys] or [np.array([], dtype=np.uint64)])
    sizes = Counter(group.tolist())
    limit = cap_limit(list(sizes.values()), settings.max_share, settings.max_per_group)
    if sizes and not limit:
        raise CapsLeaveNothing(f"balance.max_share {settings.max_share:g} leaves no row: {settings.cap_column} has "
                               f"{len(sizes)} groups, and shares of at most {settings.max_share:g} take at least "
                               f"{math.ceil(1 / settings.max_share - 1e-9)}")
    over = {}
    for name, n in sizes.items():
        if n > limit:
            rows = np.flatnonzero(group == name)
            last = rows[np.lexsort((second[rows], first[rows]))[limit - 1]] if limit else None
            over[name] = {"rows": n, "keeps": limit, "last": None if last is None else
                          [float(first[last]), int(second[last])]}
    return {"column": settings.cap_column, "limit": limit, "total": len(group), "over": over}


def capped(table: pa.Table, settings: BalanceSettings, decided: dict) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected) of a shard under the plan: a row of an over-cap group is kept while its key is at
    or before the group's last kept key. One pass whatever the number of capped groups."""
    names = list(decided["over"])
    at = pd.Index(names, dtype=object).get_indexer(groups.of(table, decided["column"]))
    capped_row, at = at >= 0, np.maximum(at, 0)
    overs = [decided["over"][name] for name in names] or [{"last": None}]
    keeps_none = np.array([o["last"] is None for o in overs])
    last_first = np.array([o["last"][0] if o["last"] else 0.0 for o in overs], dtype=np.float64)
    last_second = np.array([o["last"][1] if o["last"] else 0 for o in overs], dtype=np.uint64)
    first, second = order_keys(table, settings)
    drop = capped_row & (keeps_none[at] | (first > last_first[at])
                         | ((first == last_first[at]) & (second > last_second[at])))
    why = " and ".join(([f"max_share {settings.max_share:g}"] if settings.max_share is not None else [])
                       + ([f"max_per_group {settings.max_per_group}"] if settings.max_per_group else []))
    reasons = np.array([f"{RULE}: {decided['column']}={name} has {o['rows']} rows, keeps {o['keeps']} ({why})"
                        for name, o in zip(names, overs)] or [""], dtype=object)
    rows = np.flatnonzero(drop)
    rejected = (table.take(pa.array(rows)).append_column("rule", pa.array([RULE] * len(rows), pa.string()))
                .append_column("reason", pa.array(reasons[at[rows]].tolist(), pa.string())))
    return table.filter(pa.array(~drop)), rejected

