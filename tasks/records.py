"""The canonical record schema shared by every stage, and the rules for ids and rejections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Base of every settings model: unknown keys are errors, never silently ignored."""
    model_config = ConfigDict(extra="forbid")


RECORD_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_index", pa.int64(), nullable=False),
    pa.field("meta", pa.string()),  # the source's other fields, as a JSON object
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source", pa.string()),
    pa.field("line", pa.int64()),  # 1-based line (JSONL, CSV, txt) or row (Parquet); null when unknown
    pa.field("error", pa.string()),
    pa.field("raw", pa.string()),  # the start of the offending input, for a person to look at
])


@dataclass
class Check:
    """One rule evaluated over every row: which rows fail it, the measured value and the limit it broke."""
    rule: str            # e.g. "gopher_quality.min_doc_words"
    failed: np.ndarray   # bool per row
    value: np.ndarray    # measured value per row (number or string)
    limit: str           # e.g. "< 50", shown after the value in the reason


def split_by_checks(table: pa.Table, checks: list[Check]) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected): a row is rejected by the first check it fails, in list order.

    Rejected rows gain `rule` (the check's name) and `reason` ("rule: value limit"), so every removed
    row says why.
    """
    if not checks or table.num_rows == 0:
        return table, _with_reasons(table.slice(0, 0), [], [])
    failed = np.column_stack([np.asarray(c.failed, dtype=bool) for c in checks])
    any_failed = failed.any(axis=1)
    first = failed.argmax(axis=1)
    rows = np.flatnonzero(any_failed)
    rules, reasons = [], []
    for row in rows:
        check = checks[first[row]]
        rules.append(check.rule)
        reasons.append(f"{check.rule}: {_fmt(check.value[row])} {check.limit}".rstrip())
    return table.filter(pa.array(~any_failed)), _with_reasons(table.take(rows), rules, reasons)


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def _with_reasons(table: pa.Table, rules: list[str], reasons: list[str]) -> pa.Table:
    return (table.append_column("rule", pa.array(rules, pa.string()))
                 .append_column("reason", pa.array(reasons, pa.string())))


def concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables whose columns may differ by trailing signal columns (missing ones become null)."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")
