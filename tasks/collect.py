"""Collection: find source files on any fsspec filesystem, read them as canonical records, cut shards.

Readers stream, so memory is bounded by the shard size whatever the file size: a big file becomes several
shards. Input that cannot become a record (bad JSON, bad UTF-8, a missing text field, a truncated
compressed stream) is quarantined with its file, line and error, and reading goes on.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import zlib
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.compression import compr
from pydantic import Field

from tasks.records import QUARANTINE_SCHEMA, RECORD_SCHEMA, Settings
from tasks.storage import Store, filesystem, shard_name

Format = Literal["auto", "jsonl", "parquet", "csv", "txt"]
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2", ".xz": "xz"}
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
              ".csv": "csv", ".txt": "txt", ".md": "txt"}
RAW_PREVIEW = 200


class Source(Settings):
    uri: str = Field(description="fsspec URL or glob: data/*.jsonl.gz, s3://bucket/raw/**/*.parquet, https://...")
    format: Format = Field("auto", description="auto infers it from the extension (.jsonl[.gz|.zst], .parquet, .csv, .txt)")
    text_field: str = Field("text", description="field holding the document text")
    id_field: str | None = Field(None, description="field holding the source's own id; else a hash of URI and position")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for this source")


class CollectSettings(Settings):
    shard_rows: int = Field(10_000, ge=1, description="maximum records per shard")
    shard_bytes: int = Field(64 * 2**20, ge=1024, description="maximum text bytes per shard")
    unit_bytes: int = Field(256 * 2**20, ge=1024, description="small files are grouped into one task up to this size")


@dataclass(frozen=True)
class InputFile:
    url: str
    size: int
    format: str
    compression: str | None
    source: int  # index into the config's sources
    stamp: str = ""  # ETag or modification time: tells a changed file from a seen one without reading it


@dataclass(frozen=True)
class Malformed:
    """Input at `line` that cannot become a record."""
    error: str
    raw: str = ""


class SourceError(ValueError):
    """A source that cannot be read at all (matches nothing, unknown format)."""


def infer_format(url: str, declared: str = "auto") -> tuple[str, str | None]:
    """(format, compression) from the declared format or the file extension."""
    name = posixpath.basename(url.split("?")[0]).lower()
    stem, ext = posixpath.splitext(name)
    compression = COMPRESSIONS.get(ext)
    if compression:
        stem, ext = posixpath.splitext(stem)
    if declared != "auto":
        return declared, compression
    if ext not in EXTENSIONS:
        raise SourceError(f"{url}: cannot infer the format from '{ext or name}'; set `format` on the source "
                          f"(one of jsonl, parquet, csv, txt)")
    return EXTENSIONS[ext], compression


def discover(sources: list[Source]) -> list[InputFile]:
    """Every file the sources name, in a stable order; a source that matches nothing is an error."""
    files: list[InputFile] = []
    for i, src in enumerate(sources):
        fs, path = filesystem(src.uri, src.storage_options)
        protocol = src.uri.split("://")[0] + "://" if "://" in src.uri else ""
        if fs.protocol[0] in ("http", "https") or not any(c in path for c in "*?["):
            try:
                infos = [fs.info(path)]
            except FileNotFoundError:
                raise SourceError(f"source {i} ({src.uri}): no such file") from None
        else:
            infos = [fs.info(p) for p in sorted(fs.glob(path))]
        infos = [info for info in infos if info.get("type", "file") != "directory"]
        if not infos:
            raise SourceError(f"source {i} ({src.uri}): matched no files")
        for info in infos:
            name = info["name"]
            url = name if "://" in name else protocol + name if protocol else name
            fmt, compression = infer_format(url, src.format)
            files.append(InputFile(url, int(info.get("size") or 0), fmt, compression, i, file_stamp(info)))
    return files


def file_stamp(info: dict) -> str:
    """The listing's version marker of a file: its ETag where the store has one (S3, HTTP), else its mtime."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "updated"):
        if info.get(key) not in (None, ""):
            value = info[key]
            return value.isoformat() if hasattr(value, "isoformat") else str(value).strip('"')
    return ""


def plan_units(files: list[InputFile], unit_bytes: int) -> list[list[InputFile]]:
    """Group files into units of work of about `unit_bytes`: one task per big file, many small files per task."""
    units: list[list[InputFile]] = []
    current: list[InputFile] = []
    size = 0
    for f in files:
        if current and size + f.size > unit_bytes:
            units.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        units.append(current)
    return units


def _preview(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return raw[:RAW_PREVIEW]


def iter_lines(f, chunk_bytes: int = 1 << 16) -> Iterator[bytes]:
    """Lines of any binary stream (some decompressors have no readline), read in bounded chunks.

    `read1` where the stream has it: it returns what is decoded so far, so the lines before a truncation
    are yielded before the error surfaces.
    """
    read = getattr(f, "read1", f.read)
    rest = b""
    while chunk := read(chunk_bytes):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def read_jsonl(f) -> Iterator[tuple[int, dict | Malformed]]:
    line = 0
    try:
        for line, raw in enumerate(iter_lines(f), 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield line, Malformed(f"invalid UTF-8 at byte {e.start} of the line", _preview(raw))
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield line, Malformed(f"invalid JSON: {e.msg} (column {e.colno})", _preview(text))
                continue
            if not isinstance(obj, dict):
                yield line, Malformed(f"expected a JSON object, got {type(obj).__name__}", _preview(text))
                continue
            yield line, obj
    except (EOFError, OSError, zlib.error) as e:
        yield line + 1, Malformed(f"truncated or corrupt compressed stream after line {line}: {e}")
    except Exception as e:  # zstandard raises its own ZstdError
        if type(e).__name__ != "ZstdError":
            raise
        yield line + 1, Malformed(f"truncated or corrupt compressed stream after line {line}: {e}")


def read_parquet(f, batch_rows: int) -> Iterator[tuple[int, dict | Malformed]]:
    row = 0
    for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
        for obj in batch.to_pylist():
            row += 1
            yield row, obj


def read_csv(f, batch_rows: int) -> Iterator[tuple[int, dict | Malformed]]:
    bad: list[tuple[int, Malformed]] = []

    def on_invalid(row) -> str:
        bad.append((row.number or 0, Malformed(
            f"expected {row.expected_columns} columns, got {row.actual_columns}", _preview(row.text))))
        return "skip"

    reader = pacsv.open_csv(
        f, parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        read_options=pacsv.ReadOptions(block_size=1 << 22))
    record = 1  # line 1 is the header
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as e:
            yield record + 1, Malformed(f"unreadable from here on, the rest of the file was not read: {e}")
            break
        yield from bad
        bad.clear()
        for obj in batch.to_pylist():
            record += 1
            yield record, obj
    yield from bad


def read_txt(f, text_field: str) -> Iterator[tuple[int, dict | Malformed]]:
    data = f.read()
    try:
        yield 1, {text_field: data.decode("utf-8")}
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        yield line, Malformed(f"invalid UTF-8 at byte {e.start} of the file", _preview(data[max(0, e.start - 40):e.start + 40]))


class HashingReader:
    """A read-only stream that feeds every byte it passes on into `digest`: the checksum costs no extra read."""

    def __init__(self, raw, digest):
        self.raw, self.digest = raw, digest

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def close(self) -> None:
        """Readers close what they read; the underlying file is closed by whoever opened it."""

    def drain(self) -> None:
        """Hash what the reader left unread (after a corrupt stream, say), so the checksum covers the file."""
        while self.read(1 << 20):
            pass


def file_sha256(file: InputFile, sources: list[Source]) -> str:
    """The checksum of a file's stored bytes, as collect records it in the ledger."""
    fs, path = filesystem(file.url, sources[file.source].storage_options)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as raw:
        HashingReader(raw, digest).drain()
    return digest.hexdigest()


def read_file(file: InputFile, source: Source, batch_rows: int, digest) -> Iterator[tuple[int, dict | Malformed]]:
    """(line, record-or-Malformed) for every record of one file; line is 1-based (row for Parquet).
    `digest` (a hashlib object) ends up with the checksum of the file's stored bytes."""
    fs, path = filesystem(file.url, source.storage_options)
    with fs.open(path, "rb") as raw:
        if file.format == "parquet":  # read by random access, so its checksum takes a sequential pass of its own
            yield from read_parquet(raw, batch_rows)
            raw.seek(0)
            HashingReader(raw, digest).drain()
            return
        hashing = HashingReader(raw, digest)
        f = compr[file.compression](hashing, mode="rb") if file.compression else hashing
        if file.format == "jsonl":
            yield from read_jsonl(f)
        elif file.format == "csv":
            yield from read_csv(f, batch_rows)
        else:
            yield from read_txt(f, source.text_field)
        hashing.drain()


def make_id(url: str, position: int) -> str:
    return hashlib.sha1(f"{url}#{position}".encode()).hexdigest()[:20]


def to_record(obj: dict, source: Source) -> tuple[str | None, str] | Malformed:
    """(id or None, text) of a parsed object, or why it is not a record."""
    if source.text_field not in obj:
        return Malformed(f"missing text field '{source.text_field}' (fields: {', '.join(sorted(obj)) or 'none'})")
    text = obj[source.text_field]
    if not isinstance(text, str):
        return Malformed(f"text field '{source.text_field}' is {type(text).__name__ if text is not None else 'null'}, "
                         "expected a string")
    rid = None
    if source.id_field:
        rid = obj.get(source.id_field)
        if rid is None or rid == "":
            return Malformed(f"missing id field '{source.id_field}'")
        rid = str(rid)
    return rid, text


class ShardWriter:
    """Accumulates records of one unit and writes a shard whenever it reaches the row or byte bound."""

    def __init__(self, store: Store, stage_dir: str, unit: int, settings: CollectSettings):
        self.store, self.stage_dir, self.unit, self.settings = store, stage_dir, unit, settings
        self.columns: dict[str, list] = {name: [] for name in RECORD_SCHEMA.names}
        self.text_bytes = 0
        self.shards: list[dict] = []

    def add(self, rid: str, text: str, source: str, index: int, meta: str) -> None:
        for name, value in zip(RECORD_SCHEMA.names, (rid, text, source, index, meta)):
            self.columns[name].append(value)
        self.text_bytes += len(text)
        if len(self.columns["id"]) >= self.settings.shard_rows or self.text_bytes >= self.settings.shard_bytes:
            self.flush()

    def flush(self) -> None:
        rows = len(self.columns["id"])
        if not rows:
            return
        name = shard_name(self.unit, len(self.shards))
        self.store.write_table(pa.table(self.columns, schema=RECORD_SCHEMA), self.stage_dir, name)
        self.shards.append({"name": name, "rows": rows})
        self.columns = {name: [] for name in RECORD_SCHEMA.names}
        self.text_bytes = 0


def collect_unit(files: list[InputFile], sources: list[Source], settings: CollectSettings,
                 store: Store, stage_dir: str, unit: int) -> dict:
    """Read the files of one unit into shards under `stage_dir`; returns counts, shard list and per-file stats."""
    writer = ShardWriter(store, stage_dir, unit, settings)
    quarantine: dict[str, list] = {name: [] for name in QUARANTINE_SCHEMA.names}
    per_file = []
    for file in files:
        source = sources[file.source]
        kept = bad = 0
        digest = hashlib.sha256()
        for line, obj in read_file(file, source, settings.shard_rows, digest):
            record = obj if isinstance(obj, Malformed) else to_record(obj, source)
            if isinstance(record, Malformed):
                for name, value in zip(QUARANTINE_SCHEMA.names, (file.url, line, record.error, record.raw)):
                    quarantine[name].append(value)
                bad += 1
                continue
            rid, text = record
            position = line - 1
            meta = {k: v for k, v in obj.items() if k not in (source.text_field, source.id_field)}
            writer.add(rid or make_id(file.url, position), text, file.url, position,
                       json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str))
            kept += 1
        per_file.append({"uri": file.url, "bytes": file.size, "stamp": file.stamp, "sha256": digest.hexdigest(),
                         "records": kept, "quarantined": bad})
    writer.flush()
    n_bad = len(quarantine["source"])
    if n_bad:
        store.write_table(pa.table(quarantine, schema=QUARANTINE_SCHEMA), stage_dir, "_quarantine", shard_name(unit))
    n_kept = sum(s["rows"] for s in writer.shards)
    return {"in": n_kept + n_bad, "kept": n_kept, "rejected": {}, "quarantined": n_bad,
            "shards": writer.shards, "files": per_file}
