"""What the image and audio end-to-end tests check alike on a finished run's folder."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow.dataset as ds


def read(paths):
    return ds.dataset([str(p) for p in paths], format="parquet").to_table()


def shard_accounting(run: Path) -> list[str]:
    """The run's shard names, after checking that every record of every shard entering preprocess and
    dedup left it kept or rejected."""
    shards = sorted(p.name for p in (run / "collect").glob("part-*.parquet"))
    for previous, stage in (("collect", "preprocess"), ("preprocess", "dedup")):
        for shard in shards:
            n_in = read([run / previous / shard]).num_rows
            assert n_in == read([run / stage / shard]).num_rows + read([run / stage / "_rejected" / shard]).num_rows
    return shards


def dedup_outcome(run: Path, group: dict[str, str]) -> tuple[dict[str, list[str]], list, list[tuple[str, str]]]:
    """(surviving file names per group, removed (file, file it duplicates) pairs that cross groups, sorted
    (rule, file) of every removal) of the run's dedup stage; `group` maps a file name to what it copies."""
    reached = read(run.glob("preprocess/part-*.parquet"))
    kept = read(run.glob("dedup/part-*.parquet"))
    removed = read(run.glob("dedup/_rejected/*.parquet"))
    name_of = dict(zip(reached["id"].to_pylist(), (Path(s).name for s in reached["source"].to_pylist())))
    survivors = defaultdict(list)
    for rid in kept["id"].to_pylist():
        survivors[group[name_of[rid]]].append(name_of[rid])
    assert {group[name] for name in name_of.values()} == set(survivors)  # every group that reached dedup stays
    merged = [(name_of[r], name_of[d]) for r, d in zip(removed["id"].to_pylist(), removed["duplicate_of"].to_pylist())
              if group[name_of[r]] != group[name_of[d]]]
    by_rule = sorted((rule, name_of[r]) for r, rule in zip(removed["id"].to_pylist(), removed["rule"].to_pylist()))
    return survivors, merged, by_rule
