"""Export: deterministic splits, Parquet shards of a target size, the manifest and the dataset card.

The package holds what a published version is made of: here the shards, manifest, card and publish;
`splits` (a record's split from its id), `balance` (group counts and caps before export) and
`balance_report` (their section of the report and card), `webdataset` (tars beside the Parquet), `report`
(the run report's HTML page) and `stage_table` (what each stage kept, for the CLI, card and report).

A version is published by writing, in this order, its shards, its dataset card and run report, its
`manifest.json` and finally `<output>/LATEST`: a version without a manifest is not a version, so a crash
mid-export leaves no half dataset behind.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from tasks.export import balance_report
from tasks.io import layout
from tasks.gates import Check, status as gate_status
from tasks.modality import Modality
from tasks.records import Settings
from tasks.export.splits import SPLITS, SplitSettings, with_splits
from tasks.export.stage_table import markdown_tables
from tasks.io.storage import Store, shard_name
from tasks.export.webdataset import tar_shard

class ExportSettings(Settings):
    name: str = Field("curated-dataset", description="dataset name on the dataset card")
    version: str | None = Field(None, pattern=layout.NAME_PATTERN, description=(
        "version id (letters, digits, '.', '_', '-', starting with a letter or digit); "
        "default: v, the run's UTC start time and its flow run's id"))
    shard_rows: int = Field(100_000, ge=1, description="maximum rows per exported shard")
    shard_bytes: int = Field(128 * 2**20, ge=1024, description="target bytes per exported shard")
    splits: SplitSettings = Field(SplitSettings(), description="shares of train, validation and test, by id hash")
    format: Literal["parquet", "webdataset"] = Field(
        "parquet", description="webdataset: a WebDataset tar beside each Parquet shard, with the same rows (the "
                               "manifest, the gates and later versions read the Parquet)")
    one_task_up_to: int = Field(20_000, ge=0, description=(
        "records up to which the three splits are exported by one task instead of one task each, side by side: "
        "for a small run, two more task runs cost more than their work"))

    @property
    def row_group_rows(self) -> int | None:
        """Parquet row group size; None: one per shard. Media modalities use small ones."""
        return None


class MediaExportSettings(ExportSettings):
    """Export settings of a modality whose records carry media bytes: small row groups, so readers stream
    the media."""
    shard_rows: int = Field(10_000, ge=1, description="maximum rows per exported shard")
    shard_bytes: int = Field(256 * 2**20, ge=1024, description="target bytes per exported shard")
    row_group: int = Field(100, ge=1, description="rows per Parquet row group")
    one_task_up_to: int = Field(500, ge=0, description=(
        "records up to which the three splits are exported by one task instead of one task each, side by side: "
        "media export encodes every record, so only a small run is worth one task"))

    @property
    def row_group_rows(self) -> int | None:
        return self.row_group


def as_is(table: pa.Table, settings: ExportSettings) -> pa.Table:
    """The export preparation of a modality whose records are exported as they are."""
    return table


def new_version(run_id: str) -> str:
    """The automatic version name: `v` and the run's id (its start time and its flow run's id), so two runs
    started in the same second never claim the same version, and names still sort by time."""
    return f"v{run_id}"


def export_split(store: Store, inputs: list[tuple[str, ...]], split: str, settings: ExportSettings,
                 out: str, modality: Modality, cuts: dict | None = None, check: Check | None = None) -> dict:
    """Stream the input shards, keep the rows of `split` (`cuts`: stratified, tasks.export.splits), prepare them as
    the modality exports them, write shards of the target size under version `out`, each validated by
    the export gate's `check` as it is written.

    Returns the split's row count, shard list, the modality's stats of what was written, and the shards'
    schema. Memory holds at most one output shard plus one input shard.
    """
    shards, buffer, rows, size = [], [], 0, 0
    stats: dict = {}
    schema: list[dict] = []

    def flush():
        nonlocal buffer, rows, size, schema
        if not rows:
            return
        name = shard_name(len(shards))
        table, beside, numbers = modality.finish_shard(pa.concat_tables(buffer), settings)
        if modality.features:
            table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": modality.features}})})
        schema = schema_of(table.schema)
        info = store.write_table(table, *layout.version(out, split, name), row_group_size=settings.row_group_rows)
        if check:
            check(store, table, f"{split}/{name}")
        shards.append({"path": f"{split}/{name}", "rows": rows, **info, **numbers})
        for suffix, data in beside.items():
            file = name.replace(".parquet", f".{suffix}")
            store.write_bytes(data, *layout.version(out, split, file))
            shards[-1][suffix.split(".")[0]] = f"{split}/{file}"
        if settings.format == "webdataset":
            tar = name.replace(".parquet", ".tar")
            store.write_bytes(tar_shard(table, modality.text_column), *layout.version(out, split, tar))
            shards[-1]["webdataset"] = f"{split}/{tar}"
        buffer, rows, size = [], 0, 0

    for parts in inputs:
        table = with_splits(store.read_table(*parts), settings.splits, cuts)
        table = modality.prepare_export(table.filter(pc.equal(table["split"], split)), settings)
        stats = add_stats(stats, modality.stats(table))
        start = 0
        while start < table.num_rows:
            take = min(settings.shard_rows - rows, table.num_rows - start)
            piece = table.slice(start, take)
            buffer.append(piece)
            rows += piece.num_rows
            size += piece.nbytes
            start += take
            if rows >= settings.shard_rows or size >= settings.shard_bytes:
                flush()
    flush()
    return {"rows": sum(s["rows"] for s in shards), "shards": shards, "stats": stats, "schema": schema}


DERIVED = ("mean", "std")  # of a {count, sum, sumsq} entry: recomputed after every merge, never added


def add_stats(a: dict, b: dict) -> dict:
    """Additive statistics merged: numbers add, lists add element by element, dicts merge key by key; an
    entry with count, sum and sumsq (per-channel moments) gets its mean and std."""
    out = {k: v for k, v in a.items() if k not in DERIVED}
    for key, value in b.items():
        if key in DERIVED:
            continue
        if key not in out:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = add_stats(out[key], value)
        elif isinstance(value, list):
            out[key] = [x + y for x, y in zip(out[key], value)]
        else:
            out[key] = out[key] + value
    if {"count", "sum", "sumsq"} <= out.keys() and out["count"]:
        mean = np.asarray(out["sum"], dtype=np.float64) / out["count"]
        std = np.sqrt(np.maximum(np.asarray(out["sumsq"], dtype=np.float64) / out["count"] - mean ** 2, 0))
        out["mean"], out["std"] = np.round(mean, 4).tolist(), np.round(std, 4).tolist()
    return out


def describe_version(version: str, exported: dict, base: dict | None) -> dict:
    """The manifest's account of what `version` holds: its own exported splits (`export_split` results)
    stacked on `base`, the previous version's manifest, or on nothing for a version that stands alone.
    Shard lists, rows and the modality's stats (top-level keys of the manifest) add up; each shard names the
    version folder holding it and `added` counts this version's own rows."""
    base = base or {"version": None, "splits": {}}
    stat_keys = {key for own in exported.values() for key in own["stats"]}
    splits, stats, schema = {}, {key: base[key] for key in stat_keys if key in base}, []
    for name, own in exported.items():
        previous = base["splits"].get(name, {"rows": 0, "shards": []})
        splits[name] = {"rows": previous["rows"] + own["rows"], "added": own["rows"],
                        "shards": [{"version": base["version"], **s} for s in previous["shards"]]
                        + [{"version": version, **s} for s in own["shards"]]}
        stats = add_stats(stats, own["stats"])
        schema = own["schema"] or schema
    if any("n_tokens" in s for split in splits.values() for s in split["shards"]):  # tokenized (tasks.text.tokens)
        for split in splits.values():
            split["tokens"] = sum(s.get("n_tokens", 0) for s in split["shards"])
    return {"base_version": base["version"], "documents": sum(s["rows"] for s in splits.values()),
            "splits": splits, "schema": schema or base.get("schema", []), **stats}


def latest_version(store: Store) -> str | None:
    """The version `LATEST` names, or None before the first version."""
    if not store.exists(*layout.LATEST):
        return None
    version = store.read_bytes(*layout.LATEST).decode().strip()
    if not layout.is_name(version):
        raise VersionConflict(f"{store.url(*layout.LATEST)} holds {version[:80]!r}, which is no version name")
    return version


def latest_manifest(store: Store, version: str | None = None) -> dict | None:
    """The manifest of `version`, by default the one `LATEST` names; None before the first version."""
    version = version or latest_version(store)
    return store.read_json(*layout.version(version, "manifest.json")) if version else None


def dataset_card(manifest: dict, noun: str, modality_part: str) -> str:
    """README.md for the version: what a data scientist asks first, in numbers; `modality_part` is the
    modality's own section (its statistics and how to load the data)."""
    splits = manifest["splits"]
    total = sum(s["rows"] for s in splits.values())
    split_rows = "\n".join(f"| {name} | {s['rows']} | {s['added']} | {len(s['shards'])} |" for name, s in splits.items())
    added = sum(s["added"] for s in splits.values())
    lineage = (f"{added} of them added by this version on top of `{manifest['base_version']}` (its shards stay in "
               "that version's folder and are listed in `manifest.json`)" if manifest.get("base_version")
               else "all in this version's folder")
    gates = "\n".join(f"| {g['gate']} | {g['policy']} | {gate_status(g)} |"
                      for g in manifest["gates"])
    return f"""# {manifest['name']} ({manifest['version']})

{total} {noun}, {lineage}. Built by curate run `{manifest['run_id']}` on {manifest['created']} from
{len(manifest['sources'])} source files. Config hash `{manifest['config_hash'][:16]}`.

## Splits
| split | {noun} | added by this version | shards |
|---|---|---|---|
{split_rows}

{markdown_tables(manifest["stages"], "## ", noun)}

{balance_report.markdown(manifest.get("balance"), noun)}

{modality_part}
{webdataset_part(manifest)}
## Quality gates
| gate | policy | result |
|---|---|---|
{gates}

## Schema
{chr(10).join(f"- `{f['name']}`: {f['type']}" for f in manifest['schema'])}
"""


def webdataset_part(manifest: dict) -> str:
    """How to stream the WebDataset tars, when the version has them."""
    if not any("webdataset" in s for split in manifest["splits"].values() for s in split["shards"]):
        return ""
    return """## WebDataset
Each Parquet shard has a WebDataset tar beside it with the same rows: per sample `<key>.<ext>` for the media,
`.txt` for the text or caption and `.json` for every other column (the record `id` among them).
```python
from datasets import load_dataset

tars = [posixpath.join(versions, s["version"], s["webdataset"])
        for s in manifest["splits"]["train"]["shards"] if "webdataset" in s]  # the same `versions` as above
train = load_dataset("webdataset", data_files=tars, split="train", streaming=True)
```
"""


def load_snippet(manifest: dict, loader: str) -> str:
    """Python that loads the train split from the manifest's shard list (a version may list shards of the
    versions before it); `loader` is the last line, given `files`."""
    return f"""```python
import json, posixpath, fsspec

folder = "<this folder>"  # a local path or a URL such as s3://bucket/datasets/name/versions/{manifest['version']}
with fsspec.open(posixpath.join(folder, "manifest.json")) as f:
    manifest = json.load(f)
versions = posixpath.dirname(folder.rstrip("/"))
files = [posixpath.join(versions, s["version"], s["path"]) for s in manifest["splits"]["train"]["shards"]]
{loader}
```"""


class VersionClaimed(RuntimeError):
    """Another run holds the version: publishing is exclusive."""


@contextmanager
def claimed(store: Store, version: str, run_id: str):
    """The exclusive right to publish `version` for the block, taken by creating its claim file where none
    exists (the loser of a race fails at once) and given back when the block ends, however it ends. The
    block checks that the version is not published yet: only the claim holder's check counts."""
    claim = layout.claim(version)
    if not store.create_exclusive(f"{run_id}\n".encode(), *claim):
        holder = store.read_bytes(*claim).decode().strip()
        raise VersionClaimed(f"version {version!r} is being published by run {holder}; choose another export.version "
                             f"(if that run died, delete {store.url(*claim)})")
    try:
        yield
    finally:
        store.remove(*claim)


class VersionConflict(RuntimeError):
    """LATEST moved while the run ran: another run published first, so this one's version would fork the
    history (an incremental version stacks on the version it started from)."""


LEASE_S = 60       # a publish lease older than this was left by a run that died while publishing
LEASE_WAIT_S = 30  # how long a run waits for another's publish (a few writes) before it gives up


@contextmanager
def output_lease(store: Store, holder: str):
    """The exclusive right to move LATEST for the block: `LATEST.lease` created where none exists (O_EXCL on
    a local disk, a conditional If-None-Match PUT on S3), broken once expired, removed when the block ends."""
    deadline = time.monotonic() + LEASE_WAIT_S
    while not store.create_exclusive(json.dumps({"holder": holder, "expires": time.time() + LEASE_S}).encode(),
                                     *layout.LATEST_LEASE):
        try:
            held = store.read_json(*layout.LATEST_LEASE)
        except FileNotFoundError:  # given back meanwhile
            continue
        except ValueError:  # being written this instant
            held = {"holder": "?", "expires": time.time() + 1}
        if held["expires"] < time.time():
            store.remove(*layout.LATEST_LEASE)
            continue
        if time.monotonic() > deadline:
            raise VersionConflict(f"run {held['holder']} has been publishing to {store.root} for over {LEASE_WAIT_S} s; "
                                  "nothing of this run was published: run it again")
        time.sleep(0.2)
    try:
        yield
    finally:
        store.remove(*layout.LATEST_LEASE)


def still_latest(store: Store, started_from: str | None) -> None:
    """VersionConflict unless LATEST still names `started_from`: a run checks before it exports (its work would
    be lost) and, under the output lease, before it publishes."""
    now = latest_version(store)
    if now != started_from:
        raise VersionConflict(f"LATEST moved from {started_from or 'nothing'} to {now} while this run ran (another "
                              f"run published first); nothing of this run was published: run it again to build on {now}")


def publish(store: Store, version: str, manifest: dict, card: str, report_html: str, started_from: str | None,
            holder: str) -> None:
    """Card and report, then, under the output lease and only if LATEST still names `started_from` (the version
    LATEST named when the run began), the manifest and LATEST: the manifest's presence is what makes the version
    (and the index and ledger written before it) exist, and LATEST never moves back or past a version."""
    store.write_bytes(card.encode(), *layout.version(version, "README.md"))
    store.write_bytes(report_html.encode(), *layout.version(version, "report.html"))
    with output_lease(store, holder):
        still_latest(store, started_from)
        store.write_json(manifest, *layout.version(version, "manifest.json"), durable=True)
        store.write_bytes(f"{version}\n".encode(), *layout.LATEST, durable=True)


def schema_of(table_schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type)} for f in table_schema]
