"""The ingest ledger: the source files each published version took, so a recurring ingest reads only what
is new or changed.

    ledger/<version>.parquet   uri, size, stamp (ETag or modification time), sha256, records, quarantined

A version's ledger is written just before its manifest, and only the ledgers of published versions (those
with a manifest) count: the files of a run that failed are taken again by the next one.
"""

from __future__ import annotations

from typing import Callable

import pyarrow as pa

from tasks.collect import InputFile
from tasks.io import layout
from tasks.io.secrets import public_url
from tasks.io.storage import Store

LEDGER_SCHEMA = pa.schema([("uri", pa.string()), ("size", pa.int64()), ("stamp", pa.string()),
                           ("sha256", pa.string()), ("records", pa.int64()), ("quarantined", pa.int64()),
                           ("version", pa.string())])


def record(store: Store, version: str, files: list[dict]) -> None:
    """Write the ledger of `version` from the collect stage's per-file entries."""
    rows = [{"uri": f["uri"], "size": f["bytes"], "stamp": f["stamp"], "sha256": f["sha256"],
             "records": f["records"], "quarantined": f["quarantined"], "version": version} for f in files]
    store.write_table(pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), *layout.ledger(version))


def read(store: Store) -> pa.Table:
    """Every file the published versions took."""
    published = layout.published(store)
    tables = [store.read_table(*layout.ledger(), name) for name in store.list(*layout.ledger(), pattern="*.parquet")
              if name.removesuffix(".parquet") in published]
    return pa.concat_tables(tables) if tables else LEDGER_SCHEMA.empty_table()


def unseen(files: list[InputFile], ledger: pa.Table, checksum: Callable[[InputFile], str]) -> list[InputFile]:
    """The files no published version took as they are now: new URIs, or changed sizes or contents.

    A file whose stamp changed but whose size did not is read once to compare `checksum(file)` with the
    ledger's: a touched or re-uploaded copy of the same bytes is not new.
    """
    entries = ledger.select(["uri", "size", "stamp", "sha256"]).to_pylist()
    seen = {(e["uri"], e["size"], e["stamp"]) for e in entries}
    sums = {(e["uri"], e["size"], e["sha256"]) for e in entries}
    sizes = {(uri, size) for uri, size, _ in sums}
    return [f for f in files if (public_url(f.url), f.size, f.stamp) not in seen
            and not ((public_url(f.url), f.size) in sizes and (public_url(f.url), f.size, checksum(f)) in sums)]
