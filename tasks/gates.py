"""Quality gates: Great Expectations 1.x suites validated shard by shard, then aggregated into a decision.

GX 1.x has no Dask engine, so each shard is one pandas batch; counts of map expectations are added across
shards and `mostly` is re-applied to the totals. Each shard's GX Data Docs page is rendered on the
worker and copied next to the gate's JSON report.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pyarrow as pa

from tasks.storage import Store

GatePolicy = Literal["fail", "warn", "off"]
DataDocs = Literal["failed", "always", "never"]
DEFAULT_SUITES = Path(__file__).resolve().parent.parent / "expectations"
GATES = ("raw", "clean", "dedup", "export")


class GateFailed(RuntimeError):
    """A gate with policy `fail` found data outside its suite; the message names what and how much."""


def load_suite(gate: str, modality: str, suites_dir: str | None = None, config: dict | None = None) -> dict:
    """The gate's suite: `<suites_dir>/<gate>.json`, by default the project's `expectations/<modality>/`.

    A string value `${dotted.key}` in an expectation's kwargs is replaced by that key of `config`, so a
    suite can check what the run was configured to produce (e.g. `${preprocess.min_side.min_side}`). An
    expectation whose `meta.requires` names a config switch that is off (`preprocess.language.enabled`) is
    left out, and the suite's `skipped` list says which and why: a disabled rule produces no column to check.
    """
    path = (Path(suites_dir) if suites_dir else DEFAULT_SUITES / modality) / f"{gate}.json"
    try:
        suite = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no expectation suite for gate '{gate}': {path} does not exist") from None
    kept, suite["skipped"] = [], []
    for spec in suite["expectations"]:
        requires = spec.get("meta", {}).get("requires")
        if requires and config is not None and not _config_value("${" + requires + "}", config, path):
            suite["skipped"].append({"expectation": spec["type"], "column": spec.get("kwargs", {}).get("column"),
                                     "reason": f"{requires} is off"})
            continue
        spec["kwargs"] = {k: _config_value(v, config or {}, path) for k, v in spec.get("kwargs", {}).items()}
        kept.append(spec)
    suite["expectations"] = kept
    return suite


@dataclass(frozen=True)
class Check:
    """A gate's suite in the hands of the task that writes a stage's shards: it validates each shard while it
    holds it and saves the result where the gate reads it (`<gate>/shards/`), instead of a task of the
    gate's own reading every shard back one stage later."""
    suite: dict
    docs: tuple[str, ...]  # the gate's folder in the run's reports (RunPaths.gate)
    data_docs: DataDocs = "failed"  # which shards' Data Docs pages are rendered
    fingerprint: str = field(init=False)  # of the suite as loaded (GX adds to the dicts it is given)

    def __post_init__(self):
        object.__setattr__(self, "fingerprint",
                           hashlib.sha256(json.dumps(self.suite, sort_keys=True).encode()).hexdigest()[:16])

    def __call__(self, store: Store, table: pa.Table, shard: str) -> dict:
        page = shard.replace("/", "-")
        result = (validate_shard(table, self.suite, page, store, self.docs, self.data_docs)
                  | {"suite_sha256": self.fingerprint})
        store.write_json(result, *self.docs, "shards", f"{page}.json")
        return result

    def saved(self, store: Store, shards: list[str]) -> dict[str, dict]:
        """{shard: result} of the `shards` validated against this very suite (in this run, or by the run a
        resumed run continues); a shard missing here is still to be validated."""
        found = {posixpath.basename(path).removesuffix(".json"): result
                 for path, result in store.read_jsons(*self.docs, "shards", "*.json").items()}
        return {s: found[p] for s in shards if (p := s.replace("/", "-")) in found
                and found[p].get("suite_sha256") == self.fingerprint}


def status(result: dict) -> str:
    """How a gate reads in the card, report and CLI: passed, FAILED, or off (it ran nothing, it passed nothing)."""
    return "off" if result.get("policy") == "off" else "passed" if result["success"] else "FAILED"


def _config_value(value, config: dict, path: Path):
    if isinstance(value, list):
        return [_config_value(v, config, path) for v in value]
    if not (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
        return value
    node = config
    for key in value[2:-1].split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"{path}: {value} names no config key")
        node = node[key]
    return node


_suites_loaded: dict[str, str] = {}  # suite name -> the JSON it was added to this process's context from


_context_lock = threading.Lock()
_validating = threading.Lock()  # the GX context is not thread-safe: a worker with threads validates one at a time


def _context():
    """One ephemeral GX context per worker process (GX costs seconds to import): the first caller, a gate
    task or the worker's warm-up thread (flows.warm), makes it while any other waits."""
    with _context_lock:
        return _new_context()


@lru_cache(maxsize=1)
def _new_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from tasks import gx_groups  # noqa: F401  registers curate's own expectation

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

    context = _context()
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

    context, pages = _context(), []
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
            context = _context()
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


def aggregate(gate: str, suite: dict, shard_results: list[dict], policy: GatePolicy) -> dict:
    """One decision for the gate: map expectations judged on summed counts, the others on every shard."""
    rows = sum(r["rows"] for r in shard_results)
    summary = []
    for i, spec in enumerate(suite["expectations"]):
        per_shard = [r["expectations"][i] for r in shard_results]
        counted = all(e["unexpected_count"] is not None for e in per_shard) and per_shard
        entry = {"expectation": spec["type"], "column": spec.get("kwargs", {}).get("column"),
                 "mostly": spec.get("kwargs", {}).get("mostly")}
        if per_shard and all("group_counts" in e for e in per_shard):  # tasks.gx_groups: judged on the sums
            from tasks.gx_groups import judged

            limit = spec["kwargs"]["max_share"]
            ok, group, share = judged(sum((Counter(e["group_counts"]) for e in per_shard), Counter()), limit)
            entry.update(element_count=rows, unexpected_count=None, largest_group=group, observed_share=round(share, 4),
                         success=ok, error=None if ok else
                         f"largest group {group!r} is {share:.1%} of the rows, above {limit:.1%}")
        elif counted:
            total = sum(e["element_count"] or 0 for e in per_shard)
            bad = sum(e["unexpected_count"] for e in per_shard)
            mostly = entry["mostly"] if entry["mostly"] is not None else 1.0
            entry.update(element_count=total, unexpected_count=bad,
                         unexpected_percent=round(100 * bad / total, 4) if total else 0.0,
                         success=(total == 0) or (1 - bad / total) >= mostly - 1e-12)
        else:
            failed = sum(not e["success"] for e in per_shard)
            errors = sorted({e["error"] for e in per_shard if e.get("error")})
            entry.update(element_count=rows, unexpected_count=None, failed_shards=failed, success=failed == 0,
                         error="; ".join(errors) or None)
        summary.append(entry)
    success = all(e["success"] for e in summary)
    return {"gate": gate, "suite": suite["name"], "policy": policy, "success": success,
            "skipped": suite.get("skipped", []),
            "shards": len(shard_results), "rows": rows, "expectations": summary,
            "data_docs": [p for r in shard_results for p in r["data_docs"]]}


def failure_message(result: dict) -> str:
    """One paragraph naming the suite, each failed expectation, its column and its counts."""
    parts = []
    for e in result["expectations"]:
        if e["success"]:
            continue
        where = f" on column '{e['column']}'" if e["column"] else ""
        if e["unexpected_count"] is not None:
            allowed = f", allowed at most {100 * (1 - e['mostly']):.4g}%" if e["mostly"] is not None else ""
            parts.append(f"{e['expectation']}{where}: {e['unexpected_count']} of {e['element_count']} rows unexpected "
                         f"({e['unexpected_percent']:.4g}%{allowed})")
        elif "largest_group" in e:
            parts.append(f"{e['expectation']}{where}: {e['error']}")
        else:
            error = f" ({e['error']})" if e.get("error") else ""
            parts.append(f"{e['expectation']}{where}: failed on {e['failed_shards']} of {result['shards']} shards{error}")
    return f"gate '{result['gate']}' failed (suite '{result['suite']}'): " + "; ".join(parts)


def docs_index(result: dict) -> str:
    """A small HTML index over the gate's per-shard Data Docs pages, with the aggregated table on top."""
    rows = "".join(
        f"<tr><td>{e['expectation']}</td><td>{e['column'] or ''}</td><td>{e['element_count']}</td>"
        f"<td>{'' if e['unexpected_count'] is None else e['unexpected_count']}</td>"
        f"<td>{'pass' if e['success'] else 'FAIL'}</td></tr>" for e in result["expectations"])
    rows += "".join(f"<tr><td>{e['expectation']}</td><td>{e['column'] or ''}</td><td colspan=2></td>"
                    f"<td>skipped: {e['reason']}</td></tr>" for e in result.get("skipped", []))
    links = "".join(f'<li><a href="{p}">{p.split("/")[-1]}</a></li>' for p in result["data_docs"]) or (
        "<li>none rendered: gates.data_docs renders the pages of shards that fail an expectation (failed, the "
        "default) or of every shard (always)</li>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>gate {result['gate']}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px}"
            "table{border-collapse:collapse}</style></head><body>"
            f"<h1>Gate {result['gate']}: {status(result)}</h1><p>suite <b>{result['suite']}</b>, policy {result['policy']}, "
            f"{result['rows']} rows in {result['shards']} shards</p><table><tr><th>expectation</th><th>column</th>"
            f"<th>rows</th><th>unexpected</th><th>result</th></tr>{rows}</table>"
            f"<h2>Great Expectations Data Docs per shard</h2><ul>{links}</ul></body></html>")
