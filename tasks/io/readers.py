"""Readers of what a source file holds, for every modality: table rows (JSONL, CSV, Parquet) and whole files,
streamed from any binary stream, and a row's media field resolved to bytes (inline, a path or a URL).

Each reader yields (line, row-or-`Malformed`): input that cannot become a record (bad JSON, bad UTF-8, the
wrong number of CSV fields, a truncated compressed stream) is named with its line and error and reading goes
on; nothing is dropped quietly. `tasks.collect` opens the files and turns rows into records.

Records are web data: every read is bounded (`Limits`: bytes per line, per decompressed file, per file read
whole or named by a row), lines are split in linear time however long, and a row names only files under
its table's folder or a prefix its source allows (`references.allow`). What passes a cap is quarantined
with the cap named; no byte of a file read by reference goes into an error.
"""

from __future__ import annotations

import csv
import json
import posixpath
import re
import zlib
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.io.compressed import Capped, TooLarge, decompressing
from tasks.io.secrets import public_url
from tasks.io.storage import filesystem

RAW_PREVIEW = 200


@dataclass(frozen=True)
class Malformed:
    """Input at `line` that cannot become a record; `line` here overrides the reader's where it knows better."""
    error: str
    raw: str = ""
    line: int | None = None


@dataclass(frozen=True)
class Limits:
    """The caps on what one source file may make collect read (`CollectSettings` sets them)."""
    line: int    # bytes of one line of a JSONL or CSV file
    file: int    # decompressed bytes of one source file
    record: int  # bytes of a file read whole (a .txt document, a picture) or named by a row
    rows: int    # rows per Parquet batch


def unknown_bytes(data: bytes) -> str:
    """What an error may say of bytes no decoder took: how many, and whether they read as text. Never the
    bytes themselves: a row may have named /proc/self/environ, and errors are kept in the quarantine."""
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the end of the head is still text
        text = head[:e.start].decode("utf-8") if e.start > len(head) - 4 else None
    is_text = text is not None and text.translate({9: None, 10: None, 13: None}).isprintable()
    return f"{len(data)} bytes of {'text' if is_text else 'binary data'}"


def preview(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return raw[:RAW_PREVIEW]


def iter_lines(f, max_bytes: int, chunk_bytes: int = 1 << 16) -> Iterator[bytes | LineTooLong]:
    """Lines of any binary stream (some decompressors have no readline), read in bounded chunks. A line
    over `max_bytes` is not kept: a `LineTooLong` with its first bytes stands in its place.

    `read1` where the stream has it: it returns what is decoded so far, so the lines before a truncation
    are yielded before the error surfaces. A line that spans chunks is joined once, at its end (joining at
    every chunk is quadratic in the line's length).
    """
    read = getattr(f, "read1", f.read)
    pieces, size = [], 0  # the unfinished line: its pieces (its first bytes only, once over the cap), its length
    while chunk := read(chunk_bytes):
        *ends, last = chunk.split(b"\n")
        if ends:
            yield joined(pieces + [ends[0]], size + len(ends[0]), max_bytes)
            yield from (joined([line], len(line), max_bytes) for line in ends[1:])
            pieces, size = [], 0
        if size + len(last) <= max_bytes:
            pieces.append(last)
        elif size <= max_bytes:  # the line passes the cap here: keep its head only
            pieces = [b"".join(pieces + [last])[:RAW_PREVIEW]]
        size += len(last)
    if size:
        yield joined(pieces, size, max_bytes)


@dataclass(frozen=True)
class LineTooLong:
    """What `iter_lines` yields instead of a line over its cap."""
    head: bytes
    size: int


def joined(pieces: list[bytes], size: int, max_bytes: int) -> bytes | LineTooLong:
    """The line of `size` bytes made of `pieces`, or its LineTooLong."""
    if size > max_bytes:
        return LineTooLong(b"".join(pieces)[:RAW_PREVIEW], size)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def line_too_long(line: LineTooLong, limits: Limits) -> Malformed:
    return Malformed(f"line of {line.size} bytes, over the cap collect.max_line_bytes ({limits.line}): not read",
                     preview(line.head))


def read_jsonl(f, limits: Limits) -> Iterator[tuple[int, dict | Malformed]]:
    line = 0
    try:
        for line, raw in enumerate(iter_lines(f, limits.line), 1):
            if isinstance(raw, LineTooLong):
                yield line, line_too_long(raw, limits)
                continue
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
            except ValueError as e:  # a number Python will not convert (an integer of more than 4300 digits)
                yield line, Malformed(f"invalid JSON value: {e}", preview(text))
                continue
            if not isinstance(obj, dict):
                yield line, Malformed(f"expected a JSON object, got {type(obj).__name__}", preview(text))
                continue
            surrogate = lone_surrogate(text, obj)
            yield line, Malformed(surrogate, preview(text)) if surrogate else obj
    except TooLarge as e:
        yield line + 1, Malformed(f"the file decompresses to {e} after line {line}: the rest was not read")
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


def read_csv(f, limits: Limits) -> Iterator[tuple[int, dict | Malformed]]:
    """Rows of a CSV file with a header line, with Python's csv module over the streamed lines. Values stay
    text: no type is guessed from the first rows (one odd value later would end the file). A row with an
    invalid byte or the wrong number of fields costs that row only. Line numbers are physical: a quoted
    value with line breaks advances them."""
    invalid: dict[int, int] = {}  # line -> byte offset of its first invalid UTF-8 byte
    too_long: dict[int, LineTooLong] = {}  # line -> what stands for it (read as a blank line)

    def text_lines():
        for number, raw in enumerate(iter_lines(f, limits.line), 1):
            if isinstance(raw, LineTooLong):
                too_long[number] = raw
                yield "\n"
                continue
            try:
                yield raw.decode("utf-8") + "\n"
            except UnicodeDecodeError as e:
                invalid[number] = e.start
                yield raw.decode("utf-8", errors="replace") + "\n"

    csv.field_size_limit(limits.line)  # the module's default, 128 KiB, would end the file at a long value
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
        long_line = next((n for n in range(start, end + 1) if n in too_long), None)
        if long_line is not None:
            yield long_line, line_too_long(too_long[long_line], limits)
            continue
        if not values:  # a blank line
            continue
        bad_line = next((n for n in range(start, end + 1) if n in invalid), None)
        if bad_line is not None:
            yield start, Malformed(f"invalid UTF-8 at byte {invalid[bad_line]} of line {bad_line}", preview(",".join(values)))
        elif len(values) != len(names):
            yield start, Malformed(f"expected {len(names)} columns, got {len(values)}", preview(",".join(values)))
        else:
            yield start, dict(zip(names, values))


def read_whole(f, url: str, limits: Limits) -> Iterator[tuple[int, dict | Malformed]]:
    """A file that is one record: its bytes, for the modality to make sense of (`to_payload`)."""
    try:
        data = read_capped(f, limits.record)
    except TooLarge as e:
        yield 1, Malformed(f"a file read whole holds {e}: not read")
        return
    except (EOFError, OSError, zlib.error) as e:
        yield 1, Malformed(f"truncated or corrupt compressed stream: {e}")
        return
    yield 1, {WHOLE_FILE: {"bytes": data, "path": url}}


def read_capped(f, limit: int) -> bytes:
    """All of `f`, or TooLarge past `limit` bytes (one byte more is read to know)."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"more than {limit} bytes (the cap collect.max_record_bytes)")
    return data


WHOLE_FILE = "__file__"  # the key under which `read_whole` hands over a file's bytes and URL


class ReferenceRefused(ValueError):
    """A row names a file outside its table's folder and the prefixes its source allows."""


def normalized(url: str) -> str:
    """`url` with `.` and `..` resolved and percent-escapes decoded (as a server would read them)."""
    scheme, sep, path = url.rpartition("://")
    path = posixpath.normpath(unquote(path)) if path else path
    return f"{scheme}{sep}{path}" if scheme else path


def reference_url(ref: str, table_url: str, allow: list[str]) -> str:
    """The URL a table's row names: `ref` relative to the table's own folder, or absolute (a path or a URL)
    under a prefix of `allow`. Anything else is refused: rows are untrusted, and a row naming
    /proc/self/environ, ../../secrets, file:// or http://169.254.169.254/ must read nothing."""
    folder = posixpath.dirname(table_url)
    url = ref if "://" in ref or ref.startswith("/") else posixpath.join(folder, ref)
    target = normalized(url)
    roots = ([] if "://" in ref or ref.startswith("/") else [folder]) + list(allow)
    for root in roots:
        root = normalized(root).rstrip("/")
        if target.startswith(root + "/"):
            return url
    raise ReferenceRefused(f"outside the table's folder {folder}" + (f" and the allowed prefixes {allow}" if allow else
                           " (set references.allow on the source to read files elsewhere)"))


def read_reference(ref: str, table_url: str, storage_options: dict, allow: list[str], limits: Limits) -> bytes:
    """The bytes of a file a table names (`reference_url`), at most `limits.record` of them."""
    fs, path = filesystem(reference_url(ref, table_url, allow), storage_options)
    with fs.open(path, "rb") as f:
        return read_capped(f, limits.record)


def media_bytes(obj: dict, field: str, url: str, source, limits: Limits, noun: str) -> tuple[bytes, str] | Malformed:
    """(bytes, where they came from) of a media record: a whole file, or a table row's `field` holding a path,
    a URL, bytes or a {bytes, path} struct. `noun` names the medium in errors (picture, audio file);
    `source` gives the storage options and the prefixes references may name."""
    if WHOLE_FILE in obj:
        return obj[WHOLE_FILE]["bytes"], public_url(url)
    if obj.get(field) in (None, ""):
        return Malformed(f"missing {noun} field '{field}' (fields: {', '.join(sorted(obj)) or 'none'})")
    value, where = obj[field], url
    if isinstance(value, dict):
        value, where = value.get("bytes") or value.get("path"), value.get("path") or url
    if isinstance(value, str):
        where = value
        try:
            value = read_reference(value, url, source.storage_options, source.references.allow, limits)
        except ReferenceRefused as e:
            return Malformed(f"{noun} {public_url(value)} not read: {e}", public_url(value))
        except TooLarge as e:
            return Malformed(f"{noun} {public_url(value)} not read: it holds {e}", public_url(value))
        except (OSError, ValueError) as e:
            return Malformed(f"cannot read {noun} {public_url(value)}: {type(e).__name__}: {e}", public_url(value))
    if not isinstance(value, (bytes, bytearray)):
        return Malformed(f"{noun} field '{field}' is {type(value).__name__}, expected a path, URL or bytes")
    return bytes(value), public_url(where)


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


def read_file(url: str, file_format: str, compression: str | None, storage_options: dict, limits: Limits,
              digest) -> Iterator[tuple[int, dict | Malformed]]:
    """(line, row-or-Malformed) for every row of one file (a whole file is one row); line is 1-based (row for
    Parquet). `digest` (a hashlib object) ends up with the checksum of the file's stored bytes. A reader
    that fails in a way nobody foresaw ends its file with a Malformed row, never the run."""
    fs, path = filesystem(url, storage_options)
    line = 0
    with fs.open(path, "rb") as raw:
        hashing = HashingReader(raw, digest)
        try:
            for line, row in rows(raw, hashing, url, file_format, compression, limits):
                yield line, row
        except Exception as e:  # noqa: BLE001 -- one file's bytes must never fail the run
            yield line + 1, Malformed(f"unreadable after line {line}, the rest of the file was not read: "
                                      f"{type(e).__name__}: {e}")
        if file_format == "parquet":  # read by random access, so its checksum takes a sequential pass of its own
            raw.seek(0)
        hashing.drain()


def rows(raw, hashing: HashingReader, url: str, file_format: str, compression: str | None,
         limits: Limits) -> Iterator[tuple[int, dict | Malformed]]:
    if file_format == "parquet":
        yield from read_parquet(raw, limits.rows)
        return
    f = Capped(decompressing(hashing, compression), limits.file, "collect.max_file_bytes")
    if file_format == "jsonl":
        yield from read_jsonl(f, limits)
    elif file_format == "csv":
        yield from read_csv(f, limits)
    else:
        yield from read_whole(f, url, limits)
