"""The curation flow: collect -> gate(raw) -> preprocess -> gate(clean) -> dedup -> gate(dedup) -> export
-> gate(export) -> publish. Stages are mapped over shards on the Dask cluster; only paths and counts
travel through the flow.

No `from __future__ import annotations` here: Prefect validates a deployed run's parameters against the
flow's signature, and a string annotation for `PipelineConfig` cannot be resolved there.
"""

import os
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Mapping

from prefect import flow, get_run_logger, runtime, unmapped
from prefect.context import FlowRunContext
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Failed
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect_dask import DaskTaskRunner

from flows.config import DaskSettings, PipelineConfig
from tasks import collect, gates, ledger, stages
from tasks.dedup import DedupSettings
from tasks.dedup import index as dedup_index
from tasks.export import SPLITS, describe_version, latest_manifest, new_version, publish, stage_tables
from tasks.storage import Store

def cluster_for(dask: DaskSettings, environ: Mapping[str, str]) -> dict:
    """Where a run's tasks go: the config's scheduler, else DASK_SCHEDULER_ADDRESS (docker-compose.yml sets
    it for deployed runs), else a local cluster of the config's size. DaskTaskRunner's arguments."""
    address = dask.address or environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address:
        return {"address": address}
    return {"cluster_kwargs": {"n_workers": dask.n_workers, "threads_per_worker": dask.threads_per_worker,
                               "processes": True, "memory_limit": dask.memory_limit, "dashboard_address": None}}


class ConfiguredDaskTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner that takes its cluster from the run's own `config` parameter when the first task is
    submitted, so runs started from a deployment or the UI form honour its `dask` settings, and a run that
    submits no task (nothing new) starts no cluster."""

    def __init__(self, **kwargs):
        super().__init__(**{"cluster_class": "distributed.LocalCluster", **kwargs})

    @property
    def client(self):
        if not self._client:
            config = FlowRunContext.get().parameters["config"]
            if not isinstance(config, PipelineConfig):
                config = PipelineConfig.model_validate(config)
            for name, value in cluster_for(config.dask, os.environ).items():
                setattr(self, name, value)
        return super().client


def merge_counts(results: list[dict]) -> dict:
    total = {"in": 0, "kept": 0, "rejected": {}, "quarantined": 0}
    for r in results:
        for key in ("in", "kept", "quarantined"):
            total[key] += r[key]
        for rule, n in r["rejected"].items():
            total["rejected"][rule] = total["rejected"].get(rule, 0) + n
    return total


def run_gate(gate: str, store: Store, run: str, shard_parts: list[tuple[str, ...]], config: PipelineConfig) -> dict:
    """Validate every shard against the gate's suite, save the report, publish an artifact, apply the policy."""
    policy = getattr(config.gates, gate)
    if policy == "off":
        return {"gate": gate, "policy": "off", "success": True, "expectations": []}
    suite = gates.load_suite(gate, config.gates.suites_dir)
    docs = (run, "reports", "gates", gate)
    futures = stages.validate_shard.map(
        unmapped(store), shard_parts, unmapped(gate), ["/".join(p[2:]) for p in shard_parts],
        unmapped(suite), unmapped(docs))
    result = gates.aggregate(gate, suite, [f.result() for f in futures], policy)
    store.write_json(result, run, "reports", "gates", f"{gate}.json")
    store.write_bytes(gates.docs_index(result).encode(), *docs, "index.html")
    docs_url = store.url(*docs, "index.html")
    create_markdown_artifact(key=f"gate-{gate}", markdown=gate_markdown(result, docs_url), description=f"gate {gate}")
    create_table_artifact(key=f"gate-{gate}-table", table=gate_rows(result),
                          description=f"gate {gate}: one row per expectation")
    create_link_artifact(key=f"gate-{gate}-docs", link=docs_url, link_text=f"Data Docs of gate {gate}",
                         description=f"gate {gate}: Great Expectations Data Docs")
    logger = get_run_logger()
    if not result["success"]:
        message = gates.failure_message(result)
        if policy == "fail":
            raise gates.GateFailed(message)
        logger.warning("%s (policy warn: continuing)", message)
    else:
        logger.info("gate %s passed: %d rows in %d shards", gate, result["rows"], result["shards"])
    return result


def gate_rows(result: dict) -> list[dict]:
    return [{"expectation": e["expectation"], "column": e["column"] or "", "rows": e["element_count"],
             "unexpected": "" if e["unexpected_count"] is None else e["unexpected_count"],
             "result": "pass" if e["success"] else "FAIL"} for e in result["expectations"]]


def gate_markdown(result: dict, docs_url: str) -> str:
    rows = "\n".join(f"| {r['expectation']} | {r['column']} | {r['rows']} | {r['unexpected']} | "
                     f"{'pass' if r['result'] == 'pass' else '**FAIL**'} |" for r in gate_rows(result))
    status = "passed" if result["success"] else "FAILED"
    return (f"### Gate `{result['gate']}` {status} (policy {result['policy']})\n\n"
            f"| expectation | column | rows | unexpected | result |\n|---|---|---|---|---|\n{rows}\n\n"
            f"Data Docs: {docs_url}\n")


class VersionExists(Exception):
    """The configured version name is taken: published versions are immutable."""


def run_name() -> str:
    """`web-en: incremental ingest, 2026-11-22 03:00 UTC`: what a person scans for in the runs list."""
    config = runtime.flow_run.parameters.get("config")
    data = config.model_dump() if isinstance(config, PipelineConfig) else dict(config or {})
    kind = "incremental ingest" if data.get("incremental") else "full run"
    name = (data.get("export") or {}).get("name") or "curate"
    return f"{name}: {kind}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


@flow(name="curate", log_prints=True, flow_run_name=run_name, task_runner=ConfiguredDaskTaskRunner())
def curate(config: PipelineConfig) -> dict:
    """Curate the configured sources into a published, gated dataset version; returns the run summary."""
    try:
        summary = curate_once(config)
    except (gates.GateFailed, VersionExists) as stop:
        # An expected stop: the Failed state carries the reason to the UI and the caller (as FailedRun),
        # without an engine traceback.
        return Failed(message=str(stop))
    if summary.get("nothing_new"):  # a state of its own, so the runs list tells these apart at a glance
        return Completed(name="Nothing new", message=f"all {summary['source_files']} source files seen before",
                         data=summary)
    return summary


def curate_once(config: PipelineConfig) -> dict:
    logger = get_run_logger()
    started = datetime.now(timezone.utc)
    run_id = f"{started:%Y%m%d-%H%M%S}-{(runtime.flow_run.id or 'local')[:8]}"
    store, run = Store(config.output, config.storage_options), f"runs/{run_id}"
    files, base, dedup_settings = collect.discover(config.sources), None, config.dedup
    if config.incremental:
        fresh = ledger.unseen(files, ledger.read(store), lambda f: collect.file_sha256(f, config.sources))
        base = latest_manifest(store)
        if not fresh:
            return nothing_new(run_id, len(files), base)
        logger.info("incremental: %d of %d source files are new or changed", len(fresh), len(files))
        files, dedup_settings = fresh, config.dedup.model_copy(update={"against_published": True})
    version = config.export.version or new_version()
    if store.exists("versions", version, "manifest.json"):
        raise VersionExists(f"version {version!r} is already published at {store.url('versions', version)}; "
                         "set export.version to a new name or leave it empty for a timestamp")
    out = ("versions", version)
    counts, gate_results = {}, []

    units = collect.plan_units(files, config.collect.unit_bytes)
    logger.info("run %s: %d source files in %d collect tasks -> %s", run_id, len(files), len(units), store.url(run))
    collected = [f.result() for f in stages.collect_unit.map(
        units, unmapped(config.sources), unmapped(config.collect), unmapped(store), unmapped(run),
        range(len(units)), [len(u) for u in units])]
    counts["collect"] = merge_counts(collected)
    shards = [s["name"] for r in collected for s in r["shards"]]
    logger.info("collect: %s", counts["collect"])
    gate_results.append(run_gate("raw", store, run, [(run, "collect", s) for s in shards], config))

    counts["preprocess"] = merge_counts([f.result() for f in stages.preprocess_shard.map(
        unmapped(store), unmapped(run), shards, unmapped(config.preprocess))])
    logger.info("preprocess: %s", counts["preprocess"])
    gate_results.append(run_gate("clean", store, run, [(run, "preprocess", s) for s in shards], config))

    counts["dedup"], clustering = deduplicate(store, run, shards, version, counts["preprocess"]["kept"], dedup_settings)
    logger.info("dedup: %s; %s", counts["dedup"], clustering)
    try:
        gate_results.append(run_gate("dedup", store, run, [(run, "dedup", s) for s in shards], config))
    except gates.GateFailed:
        store.remove("index", version)
        raise

    exported = {split: stages.export_split.submit(store, [(run, "dedup", s) for s in shards], split,
                                                  config.export, out) for split in SPLITS}
    splits = {split: f.result() for split, f in exported.items()}
    exported_rows = sum(s["rows"] for s in splits.values())
    counts["export"] = {"in": counts["dedup"]["kept"], "kept": exported_rows, "rejected": {}, "quarantined": 0}
    try:
        gate_results.append(run_gate("export", store, run, [
            (*out, s["path"]) for split in splits.values() for s in split["shards"]], config))
    except gates.GateFailed:
        store.remove(*out)  # never leave an unpublished version's shards or index behind
        store.remove("index", version)
        raise

    sources = [f for r in collected for f in r["files"]]
    manifest = {
        "name": config.export.name, "version": version, "run_id": run_id, "created": started.isoformat(),
        **describe_version(version, splits, base), "stages": counts, "dedup": clustering,
        "config": config.redacted(), "config_hash": config.fingerprint(), "sources": sources,
        "gates": [{k: g[k] for k in ("gate", "policy", "success")} | {"expectations": g.get("expectations", [])}
                  for g in gate_results],
    }
    ledger.record(store, version, sources)
    publish(store, version, manifest)
    dedup_index.commit(store, version, shards, exported_rows, dedup_settings)
    create_link_artifact(key="run-report", link=store.url(*out, "report.html"),
                         link_text=f"Run report of {version}: lengths, languages, rejections, duplicate clusters",
                         description="HTML run report with plots, next to the manifest")
    summary = {"run_id": run_id, "version": version, "published": store.url(*out), "stages": counts,
               "splits": {k: v["rows"] for k, v in splits.items()}, "documents": manifest["documents"],
               "base_version": manifest["base_version"],
               "gates": {g["gate"]: g["success"] for g in gate_results}}
    create_markdown_artifact(key="run-summary", markdown=summary_markdown(summary), description="curate run summary")
    logger.info("published %s (%d documents, %d added)", summary["published"], summary["documents"], exported_rows)
    return summary


def nothing_new(run_id: str, files: int, latest: dict | None) -> dict:
    """The incremental run's quick exit: every source file is in the ledger, so nothing is read or published."""
    summary = {"run_id": run_id, "version": None, "published": None, "nothing_new": True, "source_files": files,
               "latest_version": latest and latest["version"]}
    message = (f"nothing new: all {files} source files were ingested already"
               + (f"; the latest version is still {latest['version']}" if latest else ""))
    create_markdown_artifact(key="run-summary", markdown=f"### curate run `{run_id}`\n\n{message.capitalize()}.",
                             description="curate run summary")
    get_run_logger().info(message)
    return summary


def deduplicate(store: Store, run: str, shards: list[str], version: str, documents: int,
                settings: DedupSettings) -> tuple[dict, dict]:
    """Sketch per shard, candidates per band and key range, one clustering, a filter per shard (DESIGN 6).
    Reads `<run>/preprocess/<shard>`, writes `<run>/dedup/` and the version's uncommitted index."""
    for f in stages.dedup_sketch.map(unmapped(store), unmapped(run), shards, unmapped(settings)):
        f.result()
    sources = dedup_index.run_sources(run, shards)
    if settings.against_published:
        published, published_docs = dedup_index.published_sources(store, settings)
        sources, documents = published + sources, documents + published_docs
    parts = settings.key_parts(documents)
    groups = settings.band_groups(documents)
    work = [(bands, part) for bands in groups for part in range(parts)]
    for f in stages.dedup_candidates.map(unmapped(store), unmapped(run), unmapped(sources),
                                         [b for b, _ in work], [p for _, p in work], unmapped(parts)):
        f.result()
    clustering = stages.dedup_clusters.submit(store, run, sources, shards, settings).result()
    counts = merge_counts([f.result() for f in stages.dedup_filter.map(
        unmapped(store), unmapped(run), shards, unmapped(version))])
    return counts, clustering | {"key_ranges": parts, "published_shards": len(sources) - len(shards)}


def summary_markdown(summary: dict) -> str:
    added = sum(summary["splits"].values())
    on_top = f", {added} added on top of {summary['base_version']}" if summary["base_version"] else ""
    gates = ", ".join(f"{g} {'passed' if ok else '**FAILED** (policy warn)'}" for g, ok in summary["gates"].items())
    return (f"### curate run `{summary['run_id']}`\n\nPublished **{summary['version']}** at `{summary['published']}`: "
            f"{summary['documents']} documents{on_top}.\n\nGates: {gates}.\n\n{stage_tables(summary['stages'])}\n")


@contextmanager
def prefect_api():
    """Make sure the flow and its Dask workers talk to one Prefect API.

    Without PREFECT_API_URL, Prefect starts a temporary server per process, so every worker would start
    its own (seconds each, and its task runs invisible to the flow's). Start one here and hand its URL to
    the workers through the environment they inherit.
    """
    if PREFECT_API_URL.value():
        yield
        return
    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        # Flush logs and events while the server still listens; otherwise they retry against it at exit.
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def run_pipeline(config: PipelineConfig) -> dict:
    """Run the flow in this process, its tasks on the Dask cluster the config names (a local one by default)."""
    with prefect_api():
        return curate(config=config)
