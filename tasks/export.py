"""Export: deterministic splits, Parquet shards of a target size, the manifest and the dataset card.

A version is published by writing, in this order, its shards, its dataset card and run report, its
`manifest.json` and finally `<output>/LATEST`: a version without a manifest is not a version, so a crash
mid-export leaves no half dataset behind.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from tasks import report
from tasks.records import Settings
from tasks.storage import Store, shard_name

SPLITS = ("train", "validation", "test")
LENGTH_EDGES = (0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)  # characters per document
LENGTH_BINS = tuple(f"{lo:,}-{hi:,}" for lo, hi in zip(LENGTH_EDGES, LENGTH_EDGES[1:])) + (f">={LENGTH_EDGES[-1]:,}",)


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

    Returns the split's row count, shard list, documents per language and length bin, and the shards'
    schema. Memory holds at most one output shard plus one input shard.
    """
    shards, buffer, rows, text_bytes = [], [], 0, 0
    languages: Counter = Counter()
    lengths: Counter = Counter()
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
        lengths.update(length_bins(table["text"]))
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
    return {"rows": sum(s["rows"] for s in shards), "shards": shards, "languages": dict(languages),
            "lengths": dict(lengths), "schema": schema}


def length_bins(texts: pa.ChunkedArray) -> Counter:
    """Documents per length bin (LENGTH_BINS), by characters."""
    at = np.searchsorted(LENGTH_EDGES, np.asarray(pc.utf8_length(texts), dtype=np.int64), side="right") - 1
    return Counter({LENGTH_BINS[i]: int(n) for i, n in enumerate(np.bincount(at, minlength=len(LENGTH_BINS))) if n})


def describe_version(version: str, exported: dict, base: dict | None) -> dict:
    """The manifest's account of what `version` holds: its own exported splits (`export_split` results)
    stacked on `base`, the previous version's manifest, or on nothing for a version that stands alone.
    Shard lists, rows, languages and lengths add up; each shard names the version folder holding it and
    `added` counts this version's own rows."""
    base = base or {"version": None, "splits": {}, "languages": {}, "lengths": {}}
    splits, languages, lengths, schema = {}, Counter(base["languages"]), Counter(base.get("lengths", {})), []
    for name, own in exported.items():
        previous = base["splits"].get(name, {"rows": 0, "shards": []})
        splits[name] = {"rows": previous["rows"] + own["rows"], "added": own["rows"],
                        "shards": [{"version": base["version"], **s} for s in previous["shards"]]
                        + [{"version": version, **s} for s in own["shards"]]}
        languages.update(own["languages"])
        lengths.update(own["lengths"])
        schema = own["schema"] or schema
    return {"base_version": base["version"], "documents": sum(s["rows"] for s in splits.values()),
            "splits": splits, "schema": schema or base.get("schema", []), "languages": dict(languages.most_common()),
            "lengths": {b: lengths[b] for b in LENGTH_BINS if lengths[b]}}


def latest_manifest(store: Store) -> dict | None:
    """The manifest `LATEST` points at, or None before the first version."""
    if not store.exists("LATEST"):
        return None
    with store.fs.open(store.path("LATEST"), "rb") as f:
        version = f.read().decode().strip()
    with store.fs.open(store.path("versions", version, "manifest.json"), "rb") as f:
        return json.load(f)


def stage_tables(stages: dict, heading: str = "") -> str:
    """Markdown: what each stage kept, then why documents were removed (stage, rule, count, most first).
    `heading` (e.g. "## ") titles each table; the dataset card and the run-summary artifact share them."""
    stage_rows = "\n".join(f"| {stage} | {c['in']} | {c['kept']} | {sum(c['rejected'].values())} | "
                           f"{c['quarantined']} |" for stage, c in stages.items())
    rule_rows = "\n".join(f"| {stage} | {rule} | {n} |" for stage, c in stages.items()
                          for rule, n in sorted(c["rejected"].items(), key=lambda kv: -kv[1]))
    titles = (f"{heading}What each stage kept\n", f"{heading}Why documents were removed\n") if heading else ("", "")
    return (f"{titles[0]}| stage | in | kept | rejected | quarantined |\n|---|---|---|---|---|\n{stage_rows}\n\n"
            f"{titles[1]}| stage | rule | documents |\n|---|---|---|\n{rule_rows}")


def dataset_card(manifest: dict) -> str:
    """README.md for the version: what a data scientist asks first, in numbers."""
    splits = manifest["splits"]
    total = sum(s["rows"] for s in splits.values())
    split_rows = "\n".join(f"| {name} | {s['rows']} | {s['added']} | {len(s['shards'])} |" for name, s in splits.items())
    langs = "\n".join(f"| {lang} | {n} |" for lang, n in list(manifest.get("languages", {}).items())[:20])
    added = sum(s["added"] for s in splits.values())
    lineage = (f"{added} of them added by this version on top of `{manifest['base_version']}` (its shards stay in "
               "that version's folder and are listed in `manifest.json`)" if manifest.get("base_version")
               else "all in this version's folder")
    gates = "\n".join(f"| {g['gate']} | {g['policy']} | {'passed' if g['success'] else 'FAILED'} |"
                      for g in manifest["gates"])
    return f"""# {manifest['name']} ({manifest['version']})

{total} documents, {lineage}. Built by curate run `{manifest['run_id']}` on {manifest['created']} from
{len(manifest['sources'])} source files. Config hash `{manifest['config_hash'][:16]}`.

## Splits
| split | documents | added by this version | shards |
|---|---|---|---|
{split_rows}

{stage_tables(manifest["stages"], "## ")}

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

Load a split from the shard list in the manifest (a version may list shards of the versions before it):

```python
import json, posixpath, fsspec, pyarrow.dataset as ds

folder = "<this folder>"  # a local path or a URL such as s3://bucket/datasets/name/versions/{manifest['version']}
with fsspec.open(posixpath.join(folder, "manifest.json")) as f:
    manifest = json.load(f)
versions = posixpath.dirname(folder.rstrip("/"))
files = [posixpath.join(versions, s["version"], s["path"]) for s in manifest["splits"]["train"]["shards"]]
train = ds.dataset(files, format="parquet")  # or datasets.load_dataset("parquet", data_files=files)
```
"""


def publish(store: Store, version: str, manifest: dict) -> None:
    """Card and report, then manifest, then LATEST: the manifest's presence is what makes the version exist."""
    store.write_bytes(dataset_card(manifest).encode(), "versions", version, "README.md")
    store.write_bytes(report.render(manifest).encode(), "versions", version, "report.html")
    store.write_json(manifest, "versions", version, "manifest.json")
    store.write_bytes(f"{version}\n".encode(), "LATEST")


def schema_of(table_schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type)} for f in table_schema]
