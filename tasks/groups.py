"""The groups of a column: the value of a record's `source`, `lang` or `format`, or of a field of its other
fields by dotted path (`meta.category`), as a string; what balance reports and caps, and stratified splits
keep in proportion."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NONE = "(none)"   # the group of a row whose column is missing or null


def source_columns(columns: list[str]) -> list[str]:
    """The table columns holding `columns`: `meta.x.y` is read from `meta`."""
    return sorted({c.split(".", 1)[0] if c.startswith("meta.") else c for c in columns})


def of(table: pa.Table, column: str) -> np.ndarray:
    """The group of every row for `column`; NONE where the value is missing."""
    if column.startswith("meta.") and "meta" in table.column_names:
        path = column.split(".")[1:]
        return np.array([_dig(m, path) for m in table["meta"].to_pylist()], dtype=object)
    if column not in table.column_names:
        return np.full(table.num_rows, NONE, dtype=object)
    values = table[column] if pa.types.is_string(table[column].type) else pc.cast(table[column], pa.string())
    return np.asarray(pc.fill_null(values, NONE).to_numpy(zero_copy_only=False), dtype=object)


def _dig(meta: str | None, path: list[str]) -> str:
    node = json.loads(meta) if meta else {}
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return NONE
        node = node[key]
    return node if isinstance(node, str) else json.dumps(node)


def counts(table: pa.Table, columns: list[str]) -> dict[str, dict[str, int]]:
    """{column: {group: rows}}."""
    return {c: dict(Counter(of(table, c).tolist())) for c in columns}
