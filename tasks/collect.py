"""Collection: find source files on any fsspec filesystem, read them as canonical records, cut shards.

Tables (JSONL, Parquet, CSV) are parsed here for every modality; a file that is not a table is read whole
as the modality's own format (a text file, an image). The modality turns each parsed row or file into its
payload columns, or says why it cannot (`Malformed`). Readers stream, so memory is bounded by the shard
size whatever the file size: a big file becomes several shards. Input that cannot become a record (bad
JSON, bad UTF-8, a missing field, a truncated stream, an undecodable picture) is quarantined with its
file, line and error, and reading goes on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import posixpath
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from tasks.compressed import COMPRESSIONS, decompressing
from tasks.gates import Check
from tasks.layout import RunPaths
from tasks.modality import Modality
from tasks.records import QUARANTINE_SCHEMA, Settings, StageCounts
from tasks.storage import Store, filesystem, shard_name

Format = Literal["auto", "jsonl", "parquet", "csv", "txt", "image", "audio"]
TABLE_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
                    ".csv": "csv"}
RAW_PREVIEW = 200


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


class CollectSettings(Settings):
    shard_rows: int = Field(10_000, ge=1, description="maximum records per shard")
    shard_bytes: int = Field(64 * 2**20, ge=1024, description="maximum payload bytes (text, media) per shard")
    unit_bytes: int = Field(256 * 2**20, ge=1024, description="small files are grouped into one task up to this size")

    @property
    def row_group_rows(self) -> int | None:
        """Parquet row group size of the shards; None: one per shard. Media modalities use small ones."""
        return None


class MediaCollectSettings(CollectSettings):
    """Collect settings of a modality whose records carry media bytes: fewer rows per shard, small row groups
    so readers stream the media."""
    shard_rows: int = Field(2_000, ge=1, description="maximum records per shard")
    shard_bytes: int = Field(128 * 2**20, ge=1024, description="maximum media bytes per shard")
    row_group: int = Field(100, ge=1, description="rows per Parquet row group")

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


@dataclass(frozen=True)
class Malformed:
    """Input at `line` that cannot become a record; `line` here overrides the reader's where it knows better."""
    error: str
    raw: str = ""
    line: int | None = None


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
                raise SourceError(f"source {i} ({src.uri}): no such file") from None
        else:
            infos = [fs.info(p) for p in sorted(fs.glob(path))]
        infos = [info for info in infos if info.get("type", "file") != "directory"]
        if not infos:
            raise SourceError(f"source {i} ({src.uri}): matched no files")
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


def preview(raw: bytes | str) -> str:
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
                yield line, Malformed(f"invalid UTF-8 at byte {e.start} of the line", preview(raw))
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                ends_inside = e.msg.startswith("Unterminated string") or e.pos >= len(text.rstrip())
                cut = " (the line ends inside the record)" if ends_inside else ""
                yield line, Malformed(f"invalid JSON: {e.msg} (column {e.colno}){cut}", preview(text))
                continue
            except RecursionError:
                yield line, Malformed("JSON nested too deep to parse (beyond Python's recursion limit)", preview(text))
                continue
            if not isinstance(obj, dict):
                yield line, Malformed(f"expected a JSON object, got {type(obj).__name__}", preview(text))
                continue
            surrogate = lone_surrogate(text, obj)
            yield line, Malformed(surrogate, preview(text)) if surrogate else obj
    except (EOFError, OSError, zlib.error) as e:
        yield line + 1, Malformed(f"truncated or corrupt compressed stream after line {line}: {e}")
    except Exception as e:  # zstandard raises its own ZstdError
        if type(e).__name__ != "ZstdError":
            raise
        yield line + 1, Malformed(f"truncated or corrupt compressed stream after line {line}: {e}")


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(text: str, obj: dict) -> str | None:
    """Why a parsed line cannot become UTF-8 text: JSON may escape half of a surrogate pair (\\ud800), which
    Python parses into a string no UTF-8 writer accepts. Only lines with such an escape are checked."""
    if not SURROGATE_ESCAPE.search(text):
        return None
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        return f"a lone UTF-16 surrogate {e.object[e.start]!r} in a string: not encodable as UTF-8"
    return None


def read_parquet(f, batch_rows: int) -> Iterator[tuple[int, dict | Malformed]]:
    row = 0
    try:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
            for obj in rows_of(batch):
                row += 1
                yield row, obj
    except (pa.ArrowException, OSError) as e:
        where = "not a Parquet file" if row == 0 else f"unreadable after row {row}, the rest of the file was not read"
        yield row + 1, Malformed(f"{where}: {e}")


def rows_of(batch: pa.RecordBatch) -> Iterator[dict | Malformed]:
    """A batch's rows as dicts; a row whose strings are not valid UTF-8 (Parquet does not check) is Malformed."""
    try:
        yield from batch.to_pylist()
        return
    except UnicodeDecodeError:
        pass
    for i in range(batch.num_rows):
        try:
            yield batch.slice(i, 1).to_pylist()[0]
        except UnicodeDecodeError as e:
            yield Malformed(f"invalid UTF-8 in a string value (byte {e.start}): the row cannot become a record")


def read_csv(f) -> Iterator[tuple[int, dict | Malformed]]:
    """Rows of a CSV file with a header line, with Python's csv module over the streamed lines. Values stay
    text: no type is guessed from the first rows (one odd value later would end the file). A row with an
    invalid byte or the wrong number of fields costs that row only. Line numbers are physical: a quoted
    value with line breaks advances them."""
    invalid: dict[int, int] = {}  # line -> byte offset of its first invalid UTF-8 byte

    def text_lines():
        for number, raw in enumerate(iter_lines(f), 1):
            try:
                yield raw.decode("utf-8") + "\n"
            except UnicodeDecodeError as e:
                invalid[number] = e.start
                yield raw.decode("utf-8", errors="replace") + "\n"

    reader = csv.reader(text_lines())
    try:
        names = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield 1, Malformed(f"unreadable CSV header, the file was not read: {e}")
        return
    end = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield end + 1, Malformed(f"unreadable CSV from here on, the rest of the file was not read: {e}")
            return
        start, end = end + 1, reader.line_num
        if not values:  # a blank line
            continue
        bad_line = next((n for n in range(start, end + 1) if n in invalid), None)
        if bad_line is not None:
            yield start, Malformed(f"invalid UTF-8 at byte {invalid[bad_line]} of line {bad_line}", preview(",".join(values)))
        elif len(values) != len(names):
            yield start, Malformed(f"expected {len(names)} columns, got {len(values)}", preview(",".join(values)))
        else:
            yield start, dict(zip(names, values))


def read_whole(f, url: str) -> Iterator[tuple[int, dict | Malformed]]:
    """A file that is one record: its bytes, for the modality to make sense of (`to_payload`)."""
    try:
        data = f.read()
    except (EOFError, OSError, zlib.error) as e:
        yield 1, Malformed(f"truncated or corrupt compressed stream: {e}")
        return
    yield 1, {WHOLE_FILE: {"bytes": data, "path": url}}


WHOLE_FILE = "__file__"  # the key under which `read_whole` hands over a file's bytes and URL


def read_reference(ref: str, table_url: str, storage_options: dict) -> bytes:
    """The bytes of a file a table names, relative to the table's own folder unless absolute or a URL."""
    url = ref if "://" in ref or ref.startswith("/") else posixpath.join(posixpath.dirname(table_url), ref)
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "rb") as f:
        return f.read()


def media_bytes(obj: dict, field: str, url: str, source: Source, noun: str) -> tuple[bytes, str] | Malformed:
    """(bytes, where they came from) of a media record: a whole file, or a table row's `field` holding a path,
    a URL, bytes or a {bytes, path} struct. `noun` names the medium in errors (picture, audio file)."""
    if WHOLE_FILE in obj:
        return obj[WHOLE_FILE]["bytes"], url
    if obj.get(field) in (None, ""):
        return Malformed(f"missing {noun} field '{field}' (fields: {', '.join(sorted(obj)) or 'none'})")
    value, where = obj[field], url
    if isinstance(value, dict):
        value, where = value.get("bytes") or value.get("path"), value.get("path") or url
    if isinstance(value, str):
        where = value
        try:
            value = read_reference(value, url, source.storage_options)
        except (OSError, ValueError) as e:
            return Malformed(f"cannot read {noun} {value}: {type(e).__name__}: {e}", value)
    if not isinstance(value, (bytes, bytearray)):
        return Malformed(f"{noun} field '{field}' is {type(value).__name__}, expected a path, URL or bytes")
    return bytes(value), where


def optional_text(obj: dict, field: str | None) -> str | None | Malformed:
    """A table row's text field (caption, transcript, speaker...), None without one."""
    value = obj.get(field) if field else None
    if value is not None and not isinstance(value, str):
        return Malformed(f"field '{field}' is {type(value).__name__}, expected a string")
    return value


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
        f = decompressing(hashing, file.compression)
        if file.format == "jsonl":
            yield from read_jsonl(f)
        elif file.format == "csv":
            yield from read_csv(f)
        else:
            yield from read_whole(f, file.url)
        hashing.drain()


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
        mine = [f.url for f in files if f.source == i]
        if mine and not any(records.get(url) for url in mine):
            example = next((f"{url} {errors[url]}" for url in mine if url in errors), "the files hold no record")
            problems.append(f"source {i} ({source.uri}): {len(mine)} files, no record could be read; "
                            f"first problem: {example}")
    return problems


def collect_unit(files: list[InputFile], sources: list[Source], settings: CollectSettings, modality: Modality,
                 store: Store, paths: RunPaths, unit: int, check: Check | None = None) -> Collected:
    """Read the files of one unit into collect shards of the run, each validated for the raw gate (`check`) as
    it is written; returns counts, shard list and per-file stats."""
    writer = ShardWriter(store, paths, unit, settings, modality.schema, check)
    quarantine: dict[str, list] = {name: [] for name in QUARANTINE_SCHEMA.names}
    per_file, first_errors = [], {}
    for file in files:
        source = sources[file.source]
        kept = bad = 0
        digest = hashlib.sha256()
        for line, obj in read_file(file, source, settings.shard_rows, digest):
            rid = obj if isinstance(obj, Malformed) else record_id(obj, source)
            payload = rid if isinstance(rid, Malformed) else modality.to_payload(obj, source, file.url, settings)
            if isinstance(payload, Malformed):
                for name, value in zip(QUARANTINE_SCHEMA.names, (file.url, payload.line or line, payload.error, payload.raw)):
                    quarantine[name].append(value)
                first_errors.setdefault(file.url, f"line {payload.line or line}: {payload.error}")
                bad += 1
                continue
            columns, payload_bytes = payload
            position = line - 1
            consumed = {WHOLE_FILE, source.id_field, *source.payload_fields()}
            meta = {k: v for k, v in obj.items() if k not in consumed}
            writer.add({"id": rid or make_id(file, position), "source": file.url, "source_index": position,
                        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str), **columns},
                       payload_bytes)
            kept += 1
        per_file.append({"uri": file.url, "bytes": file.size, "stamp": file.stamp, "sha256": digest.hexdigest(),
                         "records": kept, "quarantined": bad})
    writer.flush()
    n_bad = len(quarantine["source"])
    if n_bad:
        store.write_table(pa.table(quarantine, schema=QUARANTINE_SCHEMA), *paths.quarantine("collect", shard_name(unit)))
    n_kept = sum(s["rows"] for s in writer.shards)
    return Collected(StageCounts(n_kept + n_bad, n_kept, {}, n_bad), writer.shards, per_file, first_errors)
