"""Collection: find source files on any fsspec filesystem, cut them into units of work, turn their rows into
canonical records in shards, and account for every row.

The readers (`tasks.io.readers`) parse tables (JSONL, Parquet, CSV) for every modality and hand over a file
that is not a table whole; the modality turns each row or file into its payload columns, or says why it
cannot (`Malformed`). Readers stream, so memory is bounded by the shard size whatever the file size: a big
file becomes several shards. Input that cannot become a record (bad JSON, bad UTF-8, a missing field, a
truncated stream, an undecodable picture) is quarantined with its file, line and error, and reading goes on.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from tasks.gates import Check
from tasks.io.compressed import COMPRESSIONS
from tasks.io.layout import RunPaths
from tasks.io.readers import WHOLE_FILE, HashingReader, Limits, Malformed, read_file
from tasks.io.secrets import public_url
from tasks.io.storage import Store, filesystem, shard_name
from tasks.modality import Modality
from tasks.records import QUARANTINE_SCHEMA, Settings, StageCounts

Format = Literal["auto", "jsonl", "parquet", "csv", "txt", "image", "audio"]
TABLE_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
                    ".csv": "csv"}


class Source(Settings):
    """Where one source's files are; each modality's source adds the fields that hold its payload."""
    uri: str = Field(description="fsspec URL or glob: data/*.jsonl.gz, s3://bucket/raw/**/*.parquet, https://...")
    format: Format = Field("auto", description="auto infers it from the extension: a table (.jsonl[.gz|.zst], "
                                               ".parquet, .csv) or a file of the modality's own kind")
    id_field: str | None = Field(None, description="field holding the source's own id; else a hash of the source's "
                                                   "place in the list, the file's path under the source's folder "
                                                   "and the record's position, the same wherever the data is mounted")
    storage_options: dict[str, Any] = Field(default_factory=dict, description=(
        "fsspec options for this source; credentials as references only: key: {env: VAR} or "
        "secret: {secret: prefect-secret-block-name}"))

    def payload_fields(self) -> list[str]:
        """The fields of a table row that become the payload (the rest go to `meta`)."""
        return []


class References(Settings):
    allow: list[str] = Field(default_factory=list, description=(
        "prefixes (s3://bucket/media/, /data/pictures/) outside the table's own folder that its rows may name; "
        "by default a row names only files under its table's folder"))


class MediaSource(Source):
    """A source whose table rows may name media files by path or URL."""
    references: References = Field(References(), description="which files a table's rows may name")


class CollectSettings(Settings):
    shard_rows: int = Field(10_000, ge=1, description="maximum records per shard")
    shard_bytes: int = Field(64 * 2**20, ge=1024, description="maximum payload bytes (text, media) per shard")
    unit_bytes: int = Field(256 * 2**20, ge=1024, description="small files are grouped into one task up to this size")
    max_line_bytes: int = Field(64 * 2**20, ge=1024, description="a longer line of a JSONL or CSV file is "
                                                                "quarantined, unread")
    max_file_bytes: int = Field(64 * 2**30, ge=1024, description="decompressed bytes of one source file; the rest "
                                                                "of a file past it is quarantined (bombs)")
    max_record_bytes: int = Field(64 * 2**20, ge=1024, description="a larger file read whole (a .txt document, a "
                                                                  "picture, a clip) or named by a row is quarantined")

    @property
    def row_group_rows(self) -> int | None:
        """Parquet row group size of the shards; None: one per shard. Media modalities use small ones."""
        return None

    @property
    def limits(self) -> Limits:
        return Limits(self.max_line_bytes, self.max_file_bytes, self.max_record_bytes, self.shard_rows)


class MediaCollectSettings(CollectSettings):
    """Collect settings of a modality whose records carry media bytes: fewer rows per shard, small row groups
    so readers stream the media."""
    shard_rows: int = Field(2_000, ge=1, description="maximum records per shard")
    shard_bytes: int = Field(128 * 2**20, ge=1024, description="maximum media bytes per shard")
    row_group: int = Field(100, ge=1, description="rows per Parquet row group")
    max_record_bytes: int = Field(512 * 2**20, ge=1024, description="a larger picture or clip is quarantined, "
                                                                   "unread")

    @property
    def row_group_rows(self) -> int | None:
        return self.row_group


@dataclass(frozen=True)
class InputFile:
    url: str
    size: int
    format: str
    compression: str | None
    source: int  # index into the config's sources
    stamp: str = ""  # ETag or modification time: tells a changed file from a seen one without reading it
    key: str = ""    # the path under the source's folder: what names the file wherever the data is mounted


class SourceError(ValueError):
    """A source that cannot be read at all (matches nothing, unknown format)."""


def infer_format(url: str, declared: str = "auto", file_format: str = "txt",
                 file_extensions: frozenset[str] | None = frozenset({".txt", ".md"})) -> tuple[str, str | None]:
    """(format, compression) from the declared format or the file extension. A name that is no table is a
    file of `file_format` if its extension is one of `file_extensions` (None: whatever the name)."""
    name = posixpath.basename(url.split("?")[0]).lower()
    stem, ext = posixpath.splitext(name)
    compression = COMPRESSIONS.get(ext)
    if compression:
        stem, ext = posixpath.splitext(stem)
    if declared != "auto":
        return declared, compression
    if ext in TABLE_EXTENSIONS:
        return TABLE_EXTENSIONS[ext], compression
    if file_extensions is None:
        return file_format, None  # the content decides: a compressed name is just a name here
    if ext in file_extensions:
        return file_format, compression
    raise SourceError(f"{url}: cannot infer the format from '{ext or name}'; set `format` on the source "
                      f"(one of jsonl, parquet, csv, {file_format})")


def discover(sources: list[Source], modality: Modality) -> list[InputFile]:
    """Every file the sources name, in a stable order; a source that matches nothing is an error."""
    files: list[InputFile] = []
    for i, src in enumerate(sources):
        fs, path = filesystem(src.uri, src.storage_options)
        protocol = src.uri.split("://")[0] + "://" if "://" in src.uri else ""
        if fs.protocol[0] in ("http", "https") or not any(c in path for c in "*?["):
            try:
                infos = [fs.info(path)]
            except FileNotFoundError:
                raise SourceError(f"source {i} ({public_url(src.uri)}): no such file") from None
        else:
            infos = [fs.info(p) for p in sorted(fs.glob(path))]
        infos = [info for info in infos if info.get("type", "file") != "directory"]
        if not infos:
            raise SourceError(f"source {i} ({public_url(src.uri)}): matched no files")
        root = static_root(path)
        for info in infos:
            name = info["name"]
            url = name if "://" in name else protocol + name if protocol else name
            fmt, compression = infer_format(url, src.format, modality.file_format, modality.file_extensions)
            key = posixpath.relpath(name, root) if root else posixpath.basename(name)
            files.append(InputFile(url, int(info.get("size") or 0), fmt, compression, i, file_stamp(info), key))
    return files


def static_root(path: str) -> str:
    """The folder of a source path before its first glob character (a single file's own folder)."""
    glob_at = min((path.find(c) for c in "*?[" if c in path), default=len(path))
    return posixpath.dirname(path[:glob_at])


def file_stamp(info: dict) -> str:
    """The listing's version marker of a file: its ETag where the store has one (S3, HTTP), else its mtime."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "updated"):
        if info.get(key) not in (None, ""):
            value = info[key]
            return value.isoformat() if hasattr(value, "isoformat") else str(value).strip('"')
    return ""


SHARDS_PER_SLOT = 4            # a few shards per worker thread: a slow shard does not leave the others idle
MIN_SHARD_BYTES = 4 * 2**20    # below this a shard's fixed cost (a task, a file per stage) outweighs the spread
EXPANSION = 4                  # payload bytes per byte of a compressed file, roughly (text, JSON)


def sized(settings: CollectSettings, files: list[InputFile], slots: int) -> CollectSettings:
    """`settings` with `shard_bytes` lowered so the run's files make about SHARDS_PER_SLOT shards per worker
    thread (`slots`): a 45 MB corpus is eight shards on two workers, not one shard on one. Never above the
    configured cap, nor below MIN_SHARD_BYTES."""
    payload = sum(f.size * (EXPANSION if f.compression else 1) for f in files)
    target = max(MIN_SHARD_BYTES, payload // (max(1, slots) * SHARDS_PER_SLOT))
    return settings.model_copy(update={"shard_bytes": min(settings.shard_bytes, target)})


def plan_units(files: list[InputFile], unit_bytes: int, workers: int = 1) -> list[list[InputFile]]:
    """Group files into units of work of about `unit_bytes`, and at most an equal share of `workers`: one task
    per big file, many small files per task, and every worker a unit when there are files enough (a unit is
    never cut below MIN_SHARD_BYTES). A file joins the unit that holds its middle, so four files of about a
    quarter each make two units of two, whichever is a byte larger. `workers` comes from the config, so a
    resumed run plans the same units."""
    unit_bytes = min(unit_bytes, max(MIN_SHARD_BYTES, -(-sum(f.size for f in files) // max(1, workers))))
    units: list[list[InputFile]] = []
    current: list[InputFile] = []
    size = 0
    for f in files:
        if current and size + f.size / 2 > unit_bytes:
            units.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        units.append(current)
    return units


def file_sha256(file: InputFile, sources: list[Source]) -> str:
    """The checksum of a file's stored bytes, as collect records it in the ledger."""
    fs, path = filesystem(file.url, sources[file.source].storage_options)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as raw:
        HashingReader(raw, digest).drain()
    return digest.hexdigest()


def make_id(file: InputFile, position: int) -> str:
    """An id from where the record is inside its source, not from the absolute URL: moving the collection to
    another disk or bucket keeps every id, and so every split."""
    return hashlib.sha1(f"{file.source}:{file.key or file.url}#{position}".encode()).hexdigest()[:20]


def record_id(obj: dict, source: Source) -> str | None | Malformed:
    """The source's own id, None without an id field, or why the row has none."""
    if not source.id_field:
        return None
    rid = obj.get(source.id_field)
    if rid is None or rid == "":
        return Malformed(f"missing id field '{source.id_field}'")
    return str(rid)


class ShardWriter:
    """Accumulates records of one unit and writes a shard whenever it reaches the row or payload-byte bound."""

    def __init__(self, store: Store, paths: RunPaths, unit: int, settings: CollectSettings, schema: pa.Schema,
                 check: Check | None = None):
        self.store, self.paths, self.unit, self.settings, self.schema = store, paths, unit, settings, schema
        self.check = check
        self.columns: dict[str, list] = {name: [] for name in schema.names}
        self.payload_bytes = 0
        self.shards: list[dict] = []

    def add(self, record: dict, payload_bytes: int) -> None:
        for name, values in self.columns.items():
            values.append(record.get(name))
        self.payload_bytes += payload_bytes
        if len(self.columns["id"]) >= self.settings.shard_rows or self.payload_bytes >= self.settings.shard_bytes:
            self.flush()

    def flush(self) -> None:
        rows = len(self.columns["id"])
        if not rows:
            return
        name = shard_name(self.unit, len(self.shards))
        table = pa.table(self.columns, schema=self.schema)
        self.store.write_table(table, *self.paths.stage("collect", name), row_group_size=self.settings.row_group_rows)
        if self.check:
            self.check(self.store, table, name)
        self.shards.append({"name": name, "rows": rows})
        self.columns = {name: [] for name in self.schema.names}
        self.payload_bytes = 0


@dataclass
class Collected:
    counts: StageCounts
    shards: list[dict]  # name and rows of each shard written
    files: list[dict]   # per source file: uri, bytes, stamp, sha256, records, quarantined (the ledger's rows)
    first_errors: dict[str, str] = field(default_factory=dict)  # file URI -> its first quarantine, with the line

    def as_dict(self) -> dict:
        return {"counts": self.counts.as_dict(), "shards": self.shards, "files": self.files,
                "first_errors": self.first_errors}

    @classmethod
    def of(cls, data: dict) -> Collected:
        return cls(StageCounts.of_dict(data["counts"]), data["shards"], data["files"], data["first_errors"])


def unit_name(unit: int) -> str:
    """What a collect unit's completion is recorded under (tasks.runs)."""
    return f"unit-{unit:05d}"


def barren_sources(files: list[InputFile], collected: list[Collected], sources: list[Source]) -> list[str]:
    """Why each source that yielded files but no record is barren: a typo in a field name quarantines every
    row, and a run must not publish without that source and say nothing."""
    records = {stats["uri"]: stats["records"] for c in collected for stats in c.files}
    errors = {uri: error for c in collected for uri, error in c.first_errors.items()}
    problems = []
    for i, source in enumerate(sources):
        mine = [public_url(f.url) for f in files if f.source == i]
        if mine and not any(records.get(url) for url in mine):
            example = next((f"{url} {errors[url]}" for url in mine if url in errors), "the files hold no record")
            problems.append(f"source {i} ({public_url(source.uri)}): {len(mine)} files, no record could be read; "
                            f"first problem: {example}")
    return problems


def as_record(obj: dict, line: int, file: InputFile, source: Source, modality: Modality,
              settings: CollectSettings) -> tuple[dict, int] | Malformed:
    """The record of one parsed row (or whole file) and its payload's bytes, or why it cannot be one. Rows are
    untrusted input: an error nobody foresaw becomes this row's quarantine entry, never the run's failure."""
    try:
        rid = record_id(obj, source)
        payload = rid if isinstance(rid, Malformed) else modality.to_payload(obj, source, file.url, settings)
        if isinstance(payload, Malformed):
            return payload
        columns, payload_bytes = payload
        consumed = {WHOLE_FILE, source.id_field, *source.payload_fields()}
        meta = json.dumps({k: v for k, v in obj.items() if k not in consumed}, ensure_ascii=False, sort_keys=True,
                          default=str)
    except Exception as e:  # noqa: BLE001
        return Malformed(f"cannot become a record: {type(e).__name__}: {e}")
    position = line - 1
    return {"id": rid or make_id(file, position), "source_index": position, "meta": meta, **columns}, payload_bytes


def collect_unit(files: list[InputFile], sources: list[Source], settings: CollectSettings, modality: Modality,
                 store: Store, paths: RunPaths, unit: int, check: Check | None = None) -> Collected:
    """Read the files of one unit into collect shards of the run, each validated for the raw gate (`check`) as
    it is written; returns counts, shard list and per-file stats."""
    writer = ShardWriter(store, paths, unit, settings, modality.schema, check)
    quarantine: dict[str, list] = {name: [] for name in QUARANTINE_SCHEMA.names}
    per_file, first_errors = [], {}
    for file in files:
        source, uri = sources[file.source], public_url(file.url)
        kept = bad = 0
        digest = hashlib.sha256()
        for line, obj in read_file(file.url, file.format, file.compression, source.storage_options,
                                   settings.limits, digest):
            record = obj if isinstance(obj, Malformed) else as_record(obj, line, file, source, modality, settings)
            if isinstance(record, Malformed):
                at = record.line or line
                for name, value in zip(QUARANTINE_SCHEMA.names, (uri, at, record.error, record.raw)):
                    quarantine[name].append(value)
                first_errors.setdefault(uri, f"line {at}: {record.error}")
                bad += 1
                continue
            record, payload_bytes = record
            writer.add(record | {"source": uri}, payload_bytes)
            kept += 1
        per_file.append({"uri": uri, "bytes": file.size, "stamp": file.stamp, "sha256": digest.hexdigest(),
                         "records": kept, "quarantined": bad})
    writer.flush()
    n_bad = len(quarantine["source"])
    if n_bad:
        store.write_table(pa.table(quarantine, schema=QUARANTINE_SCHEMA), *paths.quarantine("collect", shard_name(unit)))
    n_kept = sum(s["rows"] for s in writer.shards)
    return Collected(StageCounts(n_kept + n_bad, n_kept, {}, n_bad), writer.shards, per_file, first_errors)
