"""WebDataset tar shards: the rows of one exported Parquet shard as samples that `webdataset` and
`datasets.load_dataset("webdataset", ...)` stream, as img2dataset writes them.

A sample is the members `<key>.<ext>` of one row: each media column in its own encoding (`.jpg`, `.flac`,
from the extension of its exported path), the text or caption as `.txt`, and every other column in `.json`
(the record id among them). Every sample of a shard has the same members, as `datasets` requires: a row
without a caption has an empty `.txt`. Keys are the row's position in the shard: WebDataset cuts a sample's key at
the first dot, so ids (which may hold dots) cannot be keys.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile

import pyarrow as pa

from tasks.records import MEDIA_TYPE


def sample_members(row: dict, media: list[str], text: str | None) -> list[tuple[str, bytes]]:
    """(extension, data) of one row's members."""
    members = []
    for name in media:
        value = row[name]
        if value and value["bytes"] is not None:
            ext = posixpath.splitext(value["path"] or "")[1].lstrip(".").lower() or "bin"
            members.append((ext, value["bytes"]))
    if text in row:
        members.append(("txt", (row[text] or "").encode()))
    rest = {k: v.hex() if isinstance(v, bytes) else v for k, v in row.items() if k not in media and k != text}
    members.append(("json", json.dumps(rest, ensure_ascii=False, default=str).encode()))
    return members


def tar_shard(table: pa.Table, text: str | None) -> bytes:
    """The tar of a shard's rows; `text` names the column written as `.txt` (None: none)."""
    media = [f.name for f in table.schema if f.type == MEDIA_TYPE]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for position, row in enumerate(table.to_pylist()):
            for ext, data in sample_members(row, media, text):
                info = tarfile.TarInfo(f"{position:06d}.{ext}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
