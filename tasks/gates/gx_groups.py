"""curate's own Great Expectations expectation, for the export suite: the largest group of a column (a
source, a language) holds at most `max_share` of the rows. Importing this module registers it with GX.

GX validates one shard at a time; each shard reports its group counts, and the gate adds them up before
it judges the share (tasks.gates.aggregate), so the check holds for the whole export, not shard by shard.
"""

from __future__ import annotations

from typing import ClassVar

from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnAggregateExpectation
from great_expectations.expectations.metrics import ColumnAggregateMetricProvider, column_aggregate_value

from tasks.groups import NONE


class ColumnGroupCounts(ColumnAggregateMetricProvider):
    """{group: rows} of a column, missing values as NONE."""
    metric_name = "column.curate_group_counts"

    @column_aggregate_value(engine=PandasExecutionEngine, filter_column_isnull=False)
    def _pandas(cls, column, **kwargs):
        return {str(k): int(v) for k, v in column.fillna(NONE).astype(str).value_counts().items()}


class ExpectColumnLargestGroupShareToBeAtMost(ColumnAggregateExpectation):
    """The most frequent value of the column covers at most `max_share` of the rows."""
    max_share: float
    metric_dependencies = ("column.curate_group_counts",)
    success_keys = ("max_share",)
    args_keys = ("column", "max_share")
    library_metadata: ClassVar[dict] = {"maturity": "experimental", "tags": ["curate"], "contributors": []}

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        counts = metrics["column.curate_group_counts"]
        success, _, share = judged(counts, self.max_share)
        return {"success": success, "result": {"observed_value": share, "group_counts": counts}}


def judged(counts: dict[str, int], max_share: float) -> tuple[bool, str | None, float]:
    """(whether the largest group is within `max_share`, that group, its share of all rows); a column
    without rows passes."""
    total = sum(counts.values())
    if not total:
        return True, None, 0.0
    group = max(sorted(counts), key=counts.get)
    share = counts[group] / total
    return share <= max_share + 1e-12, group, share
