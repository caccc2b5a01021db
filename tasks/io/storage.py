"""Paths and I/O on any fsspec filesystem: run/stage layout, shard names, atomic writes.

Writes go to a temporary name and are moved into place, so a reader never sees half a file; on object
stores a single PUT is atomic already and the move is a server-side copy. A commit file (a manifest, LATEST)
is written durably: on a local disk the file and its folder are fsynced around the rename, so a power cut
cannot leave a committed name pointing at bytes that never reached the disk.

Every path is a root plus parts, and a part may never leave the root: `..`, `.`, an absolute path or a URL
in a part raises `UnsafePath`, whatever wrote the name (a run record read back, a config, LATEST).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq


def filesystem(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and the protocol-less path of `url`."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path


BUCKETED = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl")  # object stores: a path starts with a bucket


class UnsafePath(ValueError):
    """A path part that would leave the output root."""


def checked_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    """`parts` if every one stays under the root it is joined to, else UnsafePath naming the part."""
    for part in parts:
        if not isinstance(part, str) or part.startswith("/") or "://" in part or "\\" in part or \
                any(segment in (".", "..") for segment in part.split("/")):
            raise UnsafePath(f"path part {part!r} would leave the output root")
    return parts


class OutputUnusable(OSError):
    """The output cannot take this run's files: a missing bucket, no permission. The message says which."""


class Store:
    """The output location: a root URL plus its storage options. Cheap to pickle (holds no connection)."""

    def __init__(self, root: str, storage_options: dict | None = None):
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})

    def __reduce__(self):
        return (Store, (self.root, self.storage_options))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return filesystem(self.root, self.storage_options)[0]

    def url(self, *parts: str) -> str:
        return posixpath.join(self.root, *checked_parts(parts)) if parts else self.root

    def path(self, *parts: str) -> str:
        """Protocol-less path for calls on `self.fs`."""
        return filesystem(self.url(*parts), self.storage_options)[1]

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str, durable: bool = False) -> None:
        """Write atomically; `durable`: also fsync the file and its folder on a local disk (commit files)."""
        fs, target = self.fs, self.path(*parts)
        fs.makedirs(posixpath.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        local = durable and is_local(fs)
        with fs.open(tmp, "wb") as f:
            f.write(data)
            if local:
                f.flush()
                os.fsync(f.fileno())
        fs.mv(tmp, target)
        if local:
            folder = os.open(posixpath.dirname(target), os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def create_exclusive(self, data: bytes, *parts: str) -> bool:
        """Write a file only if none is there: O_EXCL on local disks, If-None-Match on S3. False if one was."""
        fs, target = self.fs, self.path(*parts)
        fs.makedirs(posixpath.dirname(target), exist_ok=True)
        try:
            with fs.open(target, "xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        except OSError:
            if fs.exists(target):  # a store that reports the lost race as another error
                return False
            raise
        return True

    def check_writable(self) -> None:
        """Raise OutputUnusable unless a file can be written under the root: on an object store its bucket
        must exist (writing would create it, and curate never creates a bucket behind a user's back)."""
        fs = self.fs
        if fs.protocol[0] in BUCKETED:
            bucket = self.path().split("/")[0]
            if not fs.exists(bucket):
                raise OutputUnusable(f"output {self.root}: bucket {bucket!r} does not exist (curate does not create "
                                     "buckets: create it, or fix the name)")
        probe = f".curate-probe-{uuid.uuid4().hex[:8]}"
        try:
            self.write_bytes(b"", probe)
            fs.rm(self.path(probe))
        except OSError as e:
            raise OutputUnusable(f"output {self.root}: cannot write there ({type(e).__name__}: {e})") from None

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open(self.path(*parts), "rb") as f:
            return f.read()

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def read_jsons(self, *parts: str) -> dict[str, Any]:
        """{path: content} of every JSON file matching `parts`, which may hold glob patterns; sorted by path."""
        return {path: json.loads(self.fs.cat_file(path)) for path in sorted(self.fs.glob(self.path(*parts)))}

    def write_json(self, obj: Any, *parts: str, durable: bool = False) -> None:
        self.write_bytes(json.dumps(obj, indent=2, sort_keys=False, default=str).encode(), *parts, durable=durable)

    def write_table(self, table: pa.Table, *parts: str, row_group_size: int | None = None) -> dict:
        """Write a Parquet file atomically; returns its size in bytes and sha256."""
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", row_group_size=row_group_size or None)
        return self._write_parquet(buf.getvalue(), *parts)

    def write_row_groups(self, groups: list[pa.Table], *parts: str) -> dict:
        """A Parquet file with a row group per table of `groups` (one schema), so that a reader filtering on
        a column each group holds one value of reads its group only."""
        buf = io.BytesIO()
        with pq.ParquetWriter(buf, groups[0].schema, compression="zstd") as writer:
            for group in groups:
                writer.write_table(group, row_group_size=max(1, group.num_rows))
        return self._write_parquet(buf.getvalue(), *parts)

    def _write_parquet(self, data: bytes, *parts: str) -> dict:
        self.write_bytes(data, *parts)
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def read_table(self, *parts: str, columns: list[str] | None = None, filters=None) -> pa.Table:
        """Read a Parquet file; `filters` skip the row groups whose statistics rule them out."""
        if filters:  # by path: pyarrow aborts at exit after filtering a Python file object (pyarrow 26)
            return pq.read_table(self.path(*parts), filesystem=self.fs, columns=columns, filters=filters)
        with self.fs.open(self.path(*parts), "rb") as f:
            return pq.read_table(f, columns=columns, filters=filters)

    def read_present(self, *parts: str, columns: list[str]) -> pa.Table:
        """Those of `columns` the file has (a stage adds columns: an early stage's file lacks later ones)."""
        with self.fs.open(self.path(*parts), "rb") as f:
            file = pq.ParquetFile(f)
            return file.read(columns=[c for c in columns if c in file.schema_arrow.names])

    def read_head(self, *parts: str, columns: list[str], rows: int) -> tuple[pa.Table, int]:
        """The first `rows` rows of `columns`, reading only the row groups they are in, and the file's rows."""
        with self.fs.open(self.path(*parts), "rb") as f:
            file = pq.ParquetFile(f)
            batches, taken = [], 0
            for batch in file.iter_batches(batch_size=max(1, rows), columns=columns):
                if taken >= rows:
                    break
                batches.append(batch)
                taken += batch.num_rows
            table = pa.Table.from_batches(batches, file.schema_arrow.empty_table().select(columns).schema)
            return table.slice(0, rows), file.metadata.num_rows

    def read_schema(self, *parts: str) -> pa.Schema:
        with self.fs.open(self.path(*parts), "rb") as f:
            return pq.read_schema(f)

    def list(self, *parts: str, pattern: str = "part-*.parquet") -> list[str]:
        """Names (relative to `parts`) of the files matching `pattern`, sorted."""
        base = self.path(*parts)
        return sorted(posixpath.basename(p) for p in self.fs.glob(posixpath.join(base, pattern)))

    def remove(self, *parts: str) -> None:
        fs, target = self.fs, self.path(*parts)
        if fs.exists(target):
            fs.rm(target, recursive=True)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def shard_name(index: int, sub: int | None = None) -> str:
    """`part-00003.parquet`, or `part-00003-0001.parquet` for the sub-shards one input split produces."""
    return f"part-{index:05d}.parquet" if sub is None else f"part-{index:05d}-{sub:04d}.parquet"
