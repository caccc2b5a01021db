"""Readers of what a source file holds, for every modality: table rows (JSONL, CSV, Parquet) and whole files,
streamed from any binary stream, and a row's media field resolved to bytes (inline, a path or a URL).

Each reader yields (line, row-or-`Malformed`): input that cannot become a record (bad JSON, bad UTF-8, the
wrong number of CSV fields, a truncated compressed stream) is named with its line and error and reading goes
on; nothing is dropped quietly. `tasks.collect` opens the files and turns rows into records.
"""

from __future__ import annotations

import csv
import json
import posixpath
import re
import zlib
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.io.compressed import decompressing
from tasks.io.storage import filesystem

RAW_PREVIEW = 200


@dataclass(frozen=True)
class Malformed:
    """Input at `line` that cannot become a record; `line` here overrides the reader's where it knows better."""
    error: str
    raw: str = ""
    line: int | None = None


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


def media_bytes(obj: dict, field: str, url: str, storage_options: dict, noun: str) -> tuple[bytes, str] | Malformed:
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
            value = read_reference(value, url, storage_options)
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


def read_file(url: str, file_format: str, compression: str | None, storage_options: dict, batch_rows: int,
              digest) -> Iterator[tuple[int, dict | Malformed]]:
    """(line, row-or-Malformed) for every row of one file (a whole file is one row); line is 1-based (row for
    Parquet). `digest` (a hashlib object) ends up with the checksum of the file's stored bytes."""
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "rb") as raw:
        if file_format == "parquet":  # read by random access, so its checksum takes a sequential pass of its own
            yield from read_parquet(raw, batch_rows)
            raw.seek(0)
            HashingReader(raw, digest).drain()
            return
        hashing = HashingReader(raw, digest)
        f = decompressing(hashing, compression)
        if file_format == "jsonl":
            yield from read_jsonl(f)
        elif file_format == "csv":
            yield from read_csv(f)
        else:
            yield from read_whole(f, url)
        hashing.drain()
