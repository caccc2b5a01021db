"""Length bounds in characters: the cheapest rule, run first to drop empty and absurdly long texts."""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from tasks.text.preprocess.text import text_lengths
from tasks.records import Check, Settings, split_by_checks


class LengthSettings(Settings):
    enabled: bool = Field(True, description="reject documents outside the length bounds")
    min_chars: int = Field(1, ge=0, description="reject documents with fewer characters")
    max_chars: int = Field(1_000_000, ge=1, description="reject documents with more characters")


def filter_length(table: pa.Table, settings: LengthSettings) -> tuple[pa.Table, pa.Table]:
    n = text_lengths(table["text"])
    return split_by_checks(table, [
        Check("length.min_chars", n < settings.min_chars, n.astype(int), f"< {settings.min_chars}"),
        Check("length.max_chars", n > settings.max_chars, n.astype(int), f"> {settings.max_chars}"),
    ])
