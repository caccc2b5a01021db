"""Quality gates: Great Expectations 1.x suites validated shard by shard, then aggregated into a decision.

The package owns the four gates (raw, clean, dedup, export) and their suites (`expectations/<modality>/`):
here, loading a suite with its config references, the `Check` a stage's task runs on each shard it writes,
and the one decision per gate; `tasks.gates.gx` is the GX engine that validates a shard and renders its
Data Docs page; `tasks.gates.gx_groups` is curate's own expectation (the largest group's share). Counts of
map expectations are added across shards and `mostly` is re-applied to the totals.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa

from tasks.gates.gx import DataDocs, metadata, named_columns, validate_shard
from tasks.io.storage import Store

__all__ = ["GATES", "Check", "DataDocs", "GateFailed", "GatePolicy", "aggregate", "docs_index", "failure_message",
           "load_suite", "metadata", "named_columns", "status", "validate_shard"]

GatePolicy = Literal["fail", "warn", "off"]
DEFAULT_SUITES = Path(__file__).resolve().parents[2] / "expectations"
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


def aggregate(gate: str, suite: dict, shard_results: list[dict], policy: GatePolicy) -> dict:
    """One decision for the gate: map expectations judged on summed counts, the others on every shard."""
    rows = sum(r["rows"] for r in shard_results)
    summary = []
    for i, spec in enumerate(suite["expectations"]):
        per_shard = [r["expectations"][i] for r in shard_results]
        counted = all(e["unexpected_count"] is not None for e in per_shard) and per_shard
        entry = {"expectation": spec["type"], "column": spec.get("kwargs", {}).get("column"),
                 "mostly": spec.get("kwargs", {}).get("mostly")}
        if per_shard and all("group_counts" in e for e in per_shard):  # tasks.gates.gx_groups: judged on the sums
            from tasks.gates.gx_groups import judged

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
