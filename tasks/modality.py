"""What a modality declares: the one contract between the shared core and `tasks/<modality>/`.

The core (collect, dedup, export, gates, ledger, report) only ever calls these; `tasks.modalities` is the
registry that names every modality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyarrow as pa


@dataclass(frozen=True)
class Modality:
    name: str
    noun: str                       # what its records are called in cards and reports: documents, images
    schema: pa.Schema               # collect's record columns: the shared ones plus the payload
    features: dict                  # Hugging Face `datasets` features of exported columns (e.g. an Image)
    text_column: str | None         # the text that goes with a record (the document, a caption): WebDataset's .txt
    # the config sections this modality reads (each a pydantic model, subclassing the shared one)
    source: type                    # a source: where its files are and which fields hold what
    collect: type
    preprocess: type
    dedup: type                     # also the dedup sketch: see tasks.dedup.DedupSettings
    export: type
    # collect: a file that is not a table is read whole, as this format; `file_extensions` are the names
    # that mean such a file (None: any name, the content decides)
    file_format: str
    file_extensions: frozenset[str] | None
    # (parsed row or whole file, source, file URL, collect settings) -> (payload columns, payload bytes) or Malformed
    to_payload: Callable
    preprocess_shard: Callable      # (table, settings) -> (kept, rejected), the ordered rules
    prepare_export: Callable        # (table, export settings) -> the table as exported (resized pictures...)
    stats: Callable                 # exported table -> additive stats for the manifest (counts, sums)
    charts: Callable                # manifest -> HTML figures for the report
    card: Callable                  # manifest -> markdown for the dataset card: its numbers and how to load it
    example: Callable               # a rejected or sample row (dict) -> a short HTML rendering for the report
    # (output shard's table, export settings) -> (the table as written, {file suffix: bytes} written beside
    # the shard, numbers for its manifest entry): text's token shards
    finish_shard: Callable = lambda table, settings: (table, {}, {})
