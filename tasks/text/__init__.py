"""The text modality: JSONL/Parquet/CSV rows or whole text files become documents (`text`); normalise,
language, quality rules and PII redaction (`preprocess`); MinHash near-duplicates (`dedup`); length and
language statistics (`stats`)."""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from tasks.collect import CollectSettings, Source
from tasks.io.readers import WHOLE_FILE, Malformed, preview
from tasks.export import ExportSettings, as_is
from tasks.modality import Modality
from tasks.records import BASE_FIELDS
from tasks.text import stats, tokens
from tasks.text.dedup import TextDedupSettings
from tasks.text.preprocess import PreprocessSettings, preprocess

class TextExportSettings(ExportSettings):
    tokenizer: tokens.TokenizerSettings | None = Field(
        None, description="also export token shards: {path: tokenizer.json} or {train: {vocab_size: ...}}")


SCHEMA = pa.schema([BASE_FIELDS[0], pa.field("text", pa.string(), nullable=False), *BASE_FIELDS[1:]])


class TextSource(Source):
    text_field: str = Field("text", description="field holding the document text")

    def payload_fields(self) -> list[str]:
        return [self.text_field]


def to_payload(obj: dict, source: TextSource, url: str, settings: CollectSettings):
    """The `text` of a row, or of a whole file (UTF-8)."""
    if WHOLE_FILE in obj:
        data = obj[WHOLE_FILE]["bytes"]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            return Malformed(f"invalid UTF-8 at byte {e.start} of the file",
                             preview(data[max(0, e.start - 40):e.start + 40]), data[:e.start].count(b"\n") + 1)
        return {"text": text}, len(text)
    if source.text_field not in obj:
        return Malformed(f"missing text field '{source.text_field}' (fields: {', '.join(sorted(obj)) or 'none'})")
    text = obj[source.text_field]
    if not isinstance(text, str):
        return Malformed(f"text field '{source.text_field}' is {type(text).__name__ if text is not None else 'null'}, "
                         "expected a string")
    return {"text": text}, len(text)


TEXT = Modality(
    name="text", noun="documents", schema=SCHEMA, features={}, text_column="text", source=TextSource, collect=CollectSettings, preprocess=PreprocessSettings,
    dedup=TextDedupSettings, export=TextExportSettings, file_format="txt", file_extensions=frozenset({".txt", ".md"}),
    to_payload=to_payload, preprocess_shard=preprocess, prepare_export=as_is,
    stats=stats.of_table, charts=stats.charts, card=stats.card, example=stats.example,
    finish_shard=tokens.finish_shard,
)
