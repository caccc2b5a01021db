"""The Great Expectations 1.x engine behind the gates: one ephemeral context per worker process, a shard's
metadata as one pandas batch, its per-expectation counts, and its Data Docs page copied next to the gate.

GX 1.x has no Dask engine and its context is neither cheap nor thread-safe: the context is made once per
process and validations in one process take turns; the datasource forgets each batch once validated.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pyarrow as pa

from tasks.io.storage import Store

DataDocs = Literal["failed", "always", "never"]

_suites_loaded: dict[str, str] = {}  # suite name -> the JSON it was added to this process's context from


_context_lock = threading.Lock()
_validating = threading.Lock()  # the GX context is not thread-safe: a worker with threads validates one at a time


def shared_context():
    """One ephemeral GX context per worker process (GX costs seconds to import): the first caller, a gate
    task or the worker's warm-up thread (flows.warm), makes it while any other waits."""
    with _context_lock:
        return _new_context()


@lru_cache(maxsize=1)
def _new_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from tasks.gates import gx_groups  # noqa: F401  registers curate's own expectation

    from great_expectations.execution_engine import pandas_execution_engine

    # GX md5-hashes every pandas batch below this size into a "fingerprint" marker that nothing reads:
    # a pass over all of a shard's text per validation
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.data_sources.add_pandas("curate")
    return context


def _validator(suite: dict, shard: str):
    import great_expectations as gx

    context = shared_context()
    source = context.data_sources.get("curate")
    asset_name = f"{suite['name']}-{shard.removesuffix('.parquet')}"
    asset = source.add_dataframe_asset(asset_name)
    batch = asset.add_batch_definition_whole_dataframe(asset_name)
    name, content = suite["name"], json.dumps(suite, sort_keys=True)
    if _suites_loaded.get(name) != content:  # new, or edited since: a worker outlives runs and suite files
        if name in _suites_loaded:
            context.suites.delete(name)
        context.suites.add(gx.ExpectationSuite(**{k: v for k, v in suite.items() if k != "skipped"}))
        _suites_loaded[name] = content
    gx_suite = context.suites.get(name)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=asset_name, data=batch, suite=gx_suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name=asset_name, validation_definitions=[definition]))
    return checkpoint, source, asset_name


def _render_docs(result, suite_name: str, store: Store, docs_parts: tuple[str, ...]) -> list[str]:
    """Render the checkpoint result's Data Docs page (and the suite's page, once per gate) and copy them into
    the gate's folder; the static assets once, not the index (the gate writes its own). Returns the pages."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    context, pages = shared_context(), []
    with tempfile.TemporaryDirectory() as docs_dir:
        for site in list(context.get_site_names()):
            context.delete_data_docs_site(site)
        context.add_data_docs_site("shard", {
            "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir}})
        resources = list(result.run_results)
        if not store.exists(*docs_parts, "expectations", f"{suite_name}.html"):
            resources.append(ExpectationSuiteIdentifier(name=suite_name))
        context.build_data_docs(site_names=["shard"], resource_identifiers=resources, build_index=False)
        for root, _, files in os.walk(docs_dir):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), docs_dir)
                if rel == "index.html" or rel.startswith("static") and store.exists(*docs_parts, rel):
                    continue
                store.write_bytes(Path(root, name).read_bytes(), *docs_parts, rel)
                if rel.startswith("validations"):
                    pages.append(rel)
    return pages


def _forget_batches(source) -> None:
    """Drop the shard's data from the datasource's execution engine, which outlives the validation: it keeps
    every batch it was given and every metric it computed (a shard's text column, boolean series per
    expectation), so a long-lived worker would otherwise grow by a shard's size per validation."""
    engine = source.get_execution_engine()
    engine.batch_manager.reset_batch_cache()
    engine.batch_manager.batch_data_cache.clear()
    engine._metric_cache.clear()


COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")


def named_columns(suite: dict) -> set[str] | None:
    """The columns the suite's expectations name; None if one of them judges the whole table (its row
    count or column set), which then needs every column."""
    names = set()
    for spec in suite["expectations"]:
        kwargs = spec.get("kwargs", {})
        named = [kwargs[k] for k in COLUMN_KWARGS if k in kwargs]
        if not named or spec["type"].startswith("expect_table_"):
            return None
        for value in named:
            names.update(value if isinstance(value, list) else [value])
    return names


def metadata(table: pa.Table, names: set[str] | None = None) -> pa.Table:
    """What a suite sees of a shard: the columns it names (`names`; all if None), media payloads
    (struct{bytes, path}) left out, hashes as hex strings. Columns no expectation reads are never copied
    into pandas: the dedup gate, say, never sees the text."""
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if names is not None and name not in names:
            continue
        if pa.types.is_struct(column.type) and "bytes" in [f.name for f in column.type]:
            continue
        if pa.types.is_binary(column.type) or pa.types.is_fixed_size_binary(column.type):
            column = pa.array([None if v is None else v.hex() for v in column.to_pylist()], pa.string())
        columns[name] = column
    return pa.table(columns)


def validate_shard(table: pa.Table, suite: dict, shard: str, store: Store | None = None,
                   docs_parts: tuple[str, ...] = (), data_docs: DataDocs = "failed") -> dict:
    """Validate one shard's metadata; returns per-expectation counts. With `store`, uploads its Data Docs page
    as `data_docs` says. An empty shard (every row rejected) lacks the columns later rules add; they are
    added empty, so each expectation judges zero rows instead of failing on a missing column."""
    table = metadata(table, named_columns(suite))
    if table.num_rows == 0:
        for spec in suite["expectations"]:
            column = spec.get("kwargs", {}).get("column")
            if column and column not in table.column_names:
                table = table.append_column(column, pa.nulls(0, pa.string()))
    pages = []
    with _validating:
        checkpoint, source, asset_name = _validator(suite, shard)
        try:
            result = checkpoint.run(batch_parameters={"dataframe": table.to_pandas()})
            run = next(iter(result.run_results.values()))
            if store is not None and (data_docs == "always" or data_docs == "failed" and not run.success):
                pages = _render_docs(result, suite["name"], store, docs_parts)
        finally:
            context = shared_context()
            context.checkpoints.delete(asset_name)
            context.validation_definitions.delete(asset_name)
            source.delete_asset(asset_name)
            _forget_batches(source)
    expectations = []
    for spec in suite["expectations"]:  # in the suite's order: GX lists results in an order of its own
        r = next(r for r in run.results if r.expectation_config.type == spec["type"] and all(
            r.expectation_config.kwargs.get(k) == v for k, v in spec.get("kwargs", {}).items()))
        cfg = r.expectation_config
        errors = {info["exception_message"] for info in (r.exception_info or {}).values()
                  if isinstance(info, dict) and info.get("raised_exception")}
        expectations.append({
            "expectation": cfg.type, "column": cfg.kwargs.get("column"), "mostly": cfg.kwargs.get("mostly"),
            "success": bool(r.success), "error": "; ".join(sorted(errors)) or None,
            "element_count": r.result.get("element_count"), "unexpected_count": r.result.get("unexpected_count"),
            **({"group_counts": r.result["group_counts"]} if "group_counts" in r.result else {}),
        })
    return {"shard": shard, "rows": table.num_rows, "success": bool(run.success), "expectations": expectations,
            "data_docs": pages}
