"""WebDataset tar shards: the rows of one exported Parquet shard as samples that `webdataset` and
`datasets.load_dataset("webdataset", ...)` stream, as img2dataset writes them.

A sample is the members `<key>.<ext>` of one row: each media column in its own encoding (`.jpg`, `.flac`,
from the extension of its exported path), the text or caption as `.txt`, float arrays (a log-mel
spectrogram) as `.<column>.npy`, and every other column in `.json` (the record id among them). Every sample of a shard has the same members, as `datasets` requires: a row
without a caption has an empty `.txt`. Keys are the row's position in the shard: WebDataset cuts a sample's key at
the first dot, so ids (which may hold dots) cannot be keys.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile

import numpy as np
import pyarrow as pa

from tasks.records import MEDIA_TYPE


def npy(values: list | None, dtype) -> bytes:
    out = io.BytesIO()
    np.save(out, np.asarray(values or [], dtype=dtype))
    return out.getvalue()


def sample_members(row: dict, media: list[str], text: str | None, arrays: dict) -> list[tuple[str, bytes]]:
    """(extension, data) of one row's members; `arrays` (float list columns -> their NumPy dtype) go as .npy."""
    members = []
    for name in media:
        value = row[name]
        if value and value["bytes"] is not None:
            ext = posixpath.splitext(value["path"] or "")[1].lstrip(".").lower() or "bin"
            members.append((ext, value["bytes"]))
    if text in row:
        members.append(("txt", (row[text] or "").encode()))
    members += [(f"{name}.npy", npy(row[name], dtype)) for name, dtype in arrays.items()]
    rest = {k: v.hex() if isinstance(v, bytes) else v for k, v in row.items()
            if k not in media and k != text and k not in arrays}
    members.append(("json", json.dumps(rest, ensure_ascii=False, default=str).encode()))
    return members


def tar_shard(table: pa.Table, text: str | None) -> bytes:
    """The tar of a shard's rows; `text` names the column written as `.txt` (None: none)."""
    media = [f.name for f in table.schema if f.type == MEDIA_TYPE]
    arrays = {f.name: f.type.value_type.to_pandas_dtype() for f in table.schema
              if pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type)}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for position, row in enumerate(table.to_pylist()):
            for ext, data in sample_members(row, media, text, arrays):
                info = tarfile.TarInfo(f"{position:06d}.{ext}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
