"""The canonical record schema shared by every stage, and the rules for ids and rejections."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator


class Settings(BaseModel):
    """Base of every settings model: unknown keys are errors, never silently ignored; `true` is no number;
    a `min_x` above its `max_x` is an error."""
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Pydantic reads `true` as 1 for a number; in a config that is a mistake (a misplaced key)."""
        if isinstance(value, bool) and _numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value

    @model_validator(mode="after")
    def _ranges_in_order(self) -> Settings:
        fields = type(self).model_fields
        for name in fields:
            upper = "max_" + name.removeprefix("min_")
            if name.startswith("min_") and upper in fields:
                low, high = getattr(self, name), getattr(self, upper)
                if low is not None and high is not None and low > high:
                    raise ValueError(f"{name} ({low}) is above {upper} ({high})")
        return self


def _numeric(annotation: Any) -> bool:
    """An int or float field (optional or not) that does not also take a boolean."""
    options = get_args(annotation) or (annotation,)
    return any(o in (int, float) for o in options) and bool not in options


# Every modality's records start with these; its payload columns (text, image, ...) follow.
BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_index", pa.int64(), nullable=False),
    pa.field("meta", pa.string()),  # the source's other fields, as a JSON object
]
# `struct{bytes, path}`: how Hugging Face `datasets` stores an Image or Audio value in Parquet.
MEDIA_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source", pa.string()),
    pa.field("line", pa.int64()),  # 1-based line (JSONL, CSV, txt) or row (Parquet); null when unknown
    pa.field("error", pa.string()),
    pa.field("raw", pa.string()),  # the start of the offending input, for a person to look at
])


@dataclass(frozen=True)
class StageCounts:
    """What one stage did to one shard or, added up, to the run: `entered == kept + rejected + quarantined`."""
    entered: int = 0
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # rows per rule
    quarantined: int = 0

    @classmethod
    def of(cls, entered: int, kept: pa.Table, rejected: pa.Table | None = None, quarantined: int = 0) -> StageCounts:
        by_rule = Counter(rejected["rule"].to_pylist()) if rejected is not None and rejected.num_rows else {}
        return cls(entered, kept.num_rows, dict(by_rule), quarantined)

    def __add__(self, other: StageCounts) -> StageCounts:
        return StageCounts(self.entered + other.entered, self.kept + other.kept,
                           dict(Counter(self.rejected) + Counter(other.rejected)), self.quarantined + other.quarantined)

    @staticmethod
    def total(counts) -> StageCounts:
        return sum(counts, StageCounts())

    def as_dict(self) -> dict:
        return {"in": self.entered, "kept": self.kept, "rejected": dict(self.rejected), "quarantined": self.quarantined}

    @classmethod
    def of_dict(cls, data: dict) -> StageCounts:
        return cls(data["in"], data["kept"], dict(data["rejected"]), data["quarantined"])


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
