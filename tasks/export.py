"""Export: deterministic splits, Parquet shards of a target size, the manifest and the dataset card.

A version is published by writing, in this order, its shards, its dataset card, its `manifest.json` and
finally `<output>/LATEST`: a version without a manifest is not a version, so a crash mid-export leaves no
half dataset behind.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from tasks.records import Settings
from tasks.storage import Store, shard_name

SPLITS = ("train", "validation", "test")


class SplitSettings(Settings):
    train: float = Field(0.98, ge=0, le=1)
    validation: float = Field(0.01, ge=0, le=1)
    test: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self):
        total = self.train + self.validation + self.test
        if abs(total - 1) > 1e-9:
            raise ValueError(f"split fractions must add up to 1, they add up to {total:g}")
        return self


class ExportSettings(Settings):
    name: str = Field("curated-dataset", description="dataset name on the dataset card")
    version: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", description="version id; default: UTC timestamp")
    shard_rows: int = Field(100_000, ge=1, description="maximum rows per exported shard")
    shard_bytes: int = Field(128 * 2**20, ge=1024, description="target text bytes per exported shard")
    splits: SplitSettings = SplitSettings()


def new_version() -> str:
    return datetime.now(timezone.utc).strftime("v%Y%m%d-%H%M%S")


def assign_splits(ids, splits: SplitSettings) -> np.ndarray:
    """Split name per id from a stable hash of the id: the same id lands in the same split in every run."""
    h = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key="curate-splits-01", categorize=False)
    u = h.astype(np.float64) / 2.0**64
    return np.where(u < splits.train, "train", np.where(u < splits.train + splits.validation, "validation", "test"))


def with_splits(table: pa.Table, splits: SplitSettings) -> pa.Table:
    return table.append_column("split", pa.array(assign_splits(table["id"], splits), pa.string()))


def export_split(store: Store, inputs: list[tuple[str, ...]], split: str, settings: ExportSettings,
                 out_parts: tuple[str, ...]) -> dict:
    """Stream the input shards, keep the rows of `split`, write shards of the target size.

    Returns the split's row count, shard list, documents per language and the shards' schema. Memory holds
    at most one output shard plus one input shard.
    """
    shards, buffer, rows, text_bytes = [], [], 0, 0
    languages: Counter = Counter()
    schema: list[dict] = []

    def flush():
        nonlocal buffer, rows, text_bytes, schema
        if not rows:
            return
        name = shard_name(len(shards))
        table = pa.concat_tables(buffer)
        schema = schema_of(table.schema)
        info = store.write_table(table, *out_parts, split, name)
        shards.append({"path": f"{split}/{name}", "rows": rows, **info})
        buffer, rows, text_bytes = [], 0, 0

    for parts in inputs:
        table = with_splits(store.read_table(*parts), settings.splits)
        table = table.filter(pc.equal(table["split"], split))
        if "lang" in table.column_names:
            languages.update(table["lang"].to_pylist())
        start = 0
        while start < table.num_rows:
            take = min(settings.shard_rows - rows, table.num_rows - start)
            piece = table.slice(start, take)
            buffer.append(piece)
            rows += piece.num_rows
            text_bytes += pc.sum(pc.binary_length(piece["text"])).as_py() or 0
            start += take
            if rows >= settings.shard_rows or text_bytes >= settings.shard_bytes:
                flush()
    flush()
    return {"rows": sum(s["rows"] for s in shards), "shards": shards, "languages": dict(languages), "schema": schema}


def dataset_card(manifest: dict) -> str:
    """README.md for the version: what a data scientist asks first, in numbers."""
    splits = manifest["splits"]
    total = sum(s["rows"] for s in splits.values())
    stage_rows = "\n".join(
        f"| {stage} | {c['in']} | {c['kept']} | {sum(c['rejected'].values())} | {c['quarantined']} |"
        for stage, c in manifest["stages"].items())
    rule_rows = "\n".join(f"| {stage} | {rule} | {n} |" for stage, c in manifest["stages"].items()
                          for rule, n in sorted(c["rejected"].items(), key=lambda kv: -kv[1]))
    split_rows = "\n".join(f"| {name} | {s['rows']} | {len(s['shards'])} |" for name, s in splits.items())
    langs = "\n".join(f"| {lang} | {n} |" for lang, n in manifest.get("languages", {}).items())
    gates = "\n".join(f"| {g['gate']} | {g['policy']} | {'passed' if g['success'] else 'FAILED'} |"
                      for g in manifest["gates"])
    return f"""# {manifest['name']} ({manifest['version']})

{total} documents, built by curate run `{manifest['run_id']}` on {manifest['created']} from
{len(manifest['sources'])} source files. Config hash `{manifest['config_hash'][:16]}`.

## Splits
| split | documents | shards |
|---|---|---|
{split_rows}

## What each stage kept
| stage | in | kept | rejected | quarantined |
|---|---|---|---|---|
{stage_rows}

## Why documents were removed
| stage | rule | documents |
|---|---|---|
{rule_rows}

## Languages (top 20)
| language | documents |
|---|---|
{langs}

## Quality gates
| gate | policy | result |
|---|---|---|
{gates}

## Schema
{chr(10).join(f"- `{f['name']}`: {f['type']}" for f in manifest['schema'])}

Load it with `pyarrow.dataset.dataset("<this folder>/train", format="parquet")` or
`datasets.load_dataset("parquet", data_files="<this folder>/train/*.parquet")`.
"""


def publish(store: Store, version: str, manifest: dict) -> None:
    """Card, then manifest, then LATEST: the manifest's presence is what makes the version exist."""
    store.write_bytes(dataset_card(manifest).encode(), "versions", version, "README.md")
    store.write_json(manifest, "versions", version, "manifest.json")
    store.write_bytes(f"{version}\n".encode(), "LATEST")


def schema_of(table_schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type)} for f in table_schema]
