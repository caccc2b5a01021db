"""The curation flow: collect -> gate(raw) -> preprocess -> gate(clean) -> dedup -> gate(dedup) -> export
-> gate(export) -> publish. Stages are mapped over shards on the Dask cluster; only paths and counts
travel through the flow. What differs between text, images and audio is the modality's (`tasks.modalities`).

No `from __future__ import annotations` here: Prefect validates a deployed run's parameters against the
flow's signature, and a string annotation for `PipelineConfig` cannot be resolved there.
"""

import os
from datetime import datetime, timezone

from prefect import flow, get_run_logger, runtime, unmapped
from prefect.states import Completed, Failed

from flows import artifacts, preflight, progress
from flows.config import PipelineConfig
from flows.runtime import ConfiguredDaskTaskRunner, cluster_slots, mark_crashed, prefect_api, run_config
from flows.server import TemporaryServer
from flows.steps import (dedup_stage, export_stage, gate_check, group_balance, quality_top_stage, run_gate,
                         semantic_stage)
from tasks import collect, export, gates, modalities, runs, stages
from tasks.dedup import index as dedup_index
from tasks.dedup.ids import RepeatedIds
from tasks.export import balance, balance_report, report
from tasks.io import layout, secrets
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.records import StageCounts
from tasks.runs import ledger
from tasks.text import semantic_index
from tasks.text.tokens import TokenizerError


class VersionExists(Exception):
    """The configured version name is taken: published versions are immutable."""


class NothingToPublish(Exception):
    """A source yielded no record, or no record is left to publish (and `allow_empty` is not set)."""


def run_name() -> str:
    """`web-en: incremental ingest, 2026-11-22 03:00 UTC`: what a person scans for in the runs list."""
    config = run_config()
    kind = "incremental ingest" if config.incremental else "full run"
    return f"{config.export.name}: {kind}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


@flow(name="curate", log_prints=True, flow_run_name=run_name, task_runner=ConfiguredDaskTaskRunner())
def curate(config: PipelineConfig, resume: str | None = None) -> dict:
    """Curate the configured sources into a published, gated dataset version; returns the run summary.
    `resume`: a failed run's id (or "last") whose finished shards this run takes instead of redoing them."""
    try:
        summary = curate_once(config, resume)
    except (gates.GateFailed, VersionExists, export.VersionClaimed, export.VersionConflict, NothingToPublish,
            RepeatedIds, secrets.SecretUnavailable, preflight.NotReady, collect.SourceError, runs.CannotResume,
            TokenizerError, balance.BalanceError) as stop:
        # An expected stop: the Failed state carries the reason to the UI and the caller (as FailedRun),
        # without an engine traceback.
        return Failed(message=str(stop))
    if summary.get("nothing_new"):  # a state of its own, so the runs list tells these apart at a glance
        return Completed(name="Nothing new", message=f"all {summary['source_files']} source files seen before",
                         data=summary)
    return summary


def curate_once(config: PipelineConfig, resume: str | None = None) -> dict:
    """Set the run up (output, sources, files, version, the run to resume), then run the pipeline under the
    version's claim, recording how the run ends; a run that does not publish leaves no version behind."""
    logger = get_run_logger()
    refused = preflight.deployed_run_problems(config, os.environ) if runtime.deployment.id else []
    if refused:  # `curate serve` checks its own config; `prefect deploy` or the UI form may not
        raise preflight.NotReady("a deployed run cannot start: " + "; ".join(refused))
    modality = modalities.get(config.modality)
    # credentials are resolved here, in memory: the run's parameters hold references only (tasks.io.secrets)
    store = Store(config.output, secrets.resolve(config.storage_options, "storage_options"))
    sources = [s.model_copy(update={"storage_options": secrets.resolve(s.storage_options, f"sources[{i}].storage_options")})
               for i, s in enumerate(config.sources)]
    preflight.ensure_ready(config, store)
    for dead in runs.release_dead(store):
        logger.warning("run %s was killed (its process is gone); its claim and uncommitted files are removed, "
                       "its finished shards kept for --resume", dead["run_id"])
        mark_crashed(dead)
    started = datetime.now(timezone.utc)
    latest = export.latest_version(store)  # LATEST must still name it when this run publishes
    files, base, dedup_settings = collect.discover(sources, modality), None, config.dedup
    if config.incremental:
        fresh = ledger.unseen(files, ledger.read(store), lambda f: collect.file_sha256(f, sources))
        base = export.latest_manifest(store, latest)
        if not fresh:
            return nothing_new(new_run_id(started), len(files), base)
        logger.info("incremental: %d of %d source files are new or changed", len(fresh), len(files))
        files, dedup_settings = fresh, config.dedup.model_copy(update={"against_published": True})
    identity = runs.file_identity(files)
    if resume:
        previous = runs.to_resume(store, None if resume == "last" else resume, config.fingerprint(), identity)
        run_id, version = previous["run_id"], previous["version"]
        logger.info("resuming run %s (version %s): finished shards are taken as they are", run_id, version)
    else:
        run_id = new_run_id(started)
        version = config.export.version or export.new_version(run_id)
    paths = RunPaths(run_id)
    with export.claimed(store, version, run_id):
        if store.exists(*layout.version(version, "manifest.json")):
            raise VersionExists(f"version {version!r} is already published at {store.url(*layout.version(version))}; "
                                "set export.version to a new name or leave it empty for an automatic one")
        record = runs.begin(store, paths, runtime.flow_run.id, config.fingerprint(), version, identity)
        try:
            with runs.heartbeat(store, record):
                summary = pipeline(config, store, sources, files, paths, version, latest, base, dedup_settings,
                                   started)
        except BaseException as e:  # a gate, an error, Ctrl-C or SIGTERM: nothing half-published stays
            runs.remove_uncommitted(store, version)
            runs.end(store, record, "failed", f"{type(e).__name__}: {e}")
            raise
        runs.end(store, record, "published")
        return summary


def new_run_id(started: datetime) -> str:
    return f"{started:%Y%m%d-%H%M%S}-{(runtime.flow_run.id or 'local')[:8]}"


def pipeline(config: PipelineConfig, store: Store, sources: list, files: list, paths: RunPaths, version: str,
             latest: str | None, base: dict | None, dedup_settings, started: datetime) -> dict:
    """collect -> gate raw -> preprocess -> gate clean -> dedup -> gate dedup -> export -> gate export ->
    publish, if LATEST still names `latest`. A shard (or collect unit) a failed run finished is taken from its
    record, not redone."""
    logger, modality = get_run_logger(), modalities.get(config.modality)
    counts, gate_results, resumed, laps = {}, [], {}, progress.Laps()
    checks = {gate: gate_check(gate, config, paths) for gate in gates.GATES}

    units = collect.plan_units(files, config.collect.unit_bytes, config.dask.n_workers * config.dask.threads_per_worker)
    collect_settings = collect.sized(config.collect, files, cluster_slots())
    logger.info("run %s: %d source files in %d collect tasks, shards of at most %d rows and %.1f MB -> %s",
                paths.run_id, len(files), len(units), collect_settings.shard_rows, collect_settings.shard_bytes / 1e6,
                store.url(*paths.root))
    done = runs.completed(store, paths, "collect")
    todo = [i for i in range(len(units)) if collect.unit_name(i) not in done]
    fresh = stages.collect_unit.map([units[i] for i in todo], unmapped(sources), unmapped(collect_settings),
                                    unmapped(config.modality), unmapped(store), unmapped(paths), todo,
                                    [len(units[i]) for i in todo], unmapped(checks["raw"]))
    collected = dict(zip(todo, progress.results(fresh, "collect", "units", lambda c: c.counts.entered)))
    collected = [collected.get(i) or collect.Collected.of(done[collect.unit_name(i)]) for i in range(len(units))]
    resumed["collect"] = len(units) - len(todo)
    counts["collect"] = StageCounts.total(c.counts for c in collected)
    barren = [] if config.allow_empty else collect.barren_sources(files, collected, sources)
    if barren:
        raise NothingToPublish("; ".join(barren) + " (set allow_empty: true to publish without them)")
    shards = [s["name"] for c in collected for s in c.shards]
    laps.lap("collect")
    gate_results.append(run_gate("raw", checks, store, paths, [paths.stage("collect", s) for s in shards], shards,
                                 config))
    laps.lap("gate raw")

    preprocess_settings, quality = config.preprocess, None
    if getattr(config.preprocess, "quality_classifier", None) and config.preprocess.quality_classifier.enabled:
        quality, model = stages.prepare_quality_classifier.submit(
            store, version, config.preprocess.quality_classifier).result()
        preprocess_settings = config.preprocess.model_copy(
            update={"quality_classifier": config.preprocess.quality_classifier.attach(model)})
        logger.info("quality classifier %s: %s", quality["sha256"][:12], quality.get("held_out", quality["origin"]))
        laps.lap("quality classifier")
    done = runs.completed(store, paths, "preprocess")
    todo = [s for s in shards if s not in done]
    fresh = stages.preprocess_shard.map(unmapped(store), unmapped(paths), todo, unmapped(config.modality),
                                        unmapped(preprocess_settings), unmapped(checks["clean"]))
    preprocessed = dict(zip(todo, progress.results(fresh, "preprocess", records=lambda c: c.entered)))
    resumed["preprocess"] = len(shards) - len(todo)
    counts["preprocess"] = StageCounts.total(preprocessed.get(s) or StageCounts.of_dict(done[s]) for s in shards)
    laps.lap("preprocess")
    gate_results.append(run_gate("clean", checks, store, paths, [paths.stage("preprocess", s) for s in shards],
                                 shards, config))
    laps.lap("gate clean")

    counts["dedup"], clustering = dedup_stage(store, paths, shards, version, counts["preprocess"].kept, dedup_settings,
                                              checks["dedup"], laps)
    logger.info("dedup: %s; %s", counts["dedup"], clustering)
    gate_results.append(run_gate("dedup", checks, store, paths, [paths.stage("dedup", s) for s in shards], shards,
                                 config))
    laps.lap("gate dedup")
    last, caps = "dedup", None
    if getattr(config.dedup, "semantic", None) and config.dedup.semantic.enabled:
        counts["semantic"], clustering["semantic"] = semantic_stage(store, paths, shards, last, version, config.dedup)
        logger.info("semantic dedup: %s; %s", clustering["semantic"], counts["semantic"])
        last = "semantic"
        laps.lap("semantic dedup")
    keep_top = preprocess_settings.quality_classifier.keep_top if quality else None
    if keep_top:
        counts["quality_top"], top = quality_top_stage(store, paths, shards, last, keep_top)
        logger.info("quality classifier keep_top %g: %d of %d documents, scores >= %.3f; %s", keep_top, top["keeps"],
                    top["documents"], top["min_score"], counts["quality_top"])
        quality, last = quality | {"keep_top": top}, "quality_top"
        laps.lap("quality top")
    if config.balance.caps:
        caps = stages.balance_plan.submit(store, [paths.stage(last, s) for s in shards], config.balance).result()
        counts["balance"] = StageCounts.total(f.result() for f in stages.balance_shard.map(
            unmapped(store), unmapped(paths), unmapped(last), shards, unmapped(config.balance), unmapped(caps)))
        logger.info("balance: at most %d rows per %s group; %s", caps["limit"], caps["column"], counts["balance"])
        last = "balance"
        laps.lap("balance")
    export.still_latest(store, latest)  # a run that cannot publish stops before it exports
    if not counts[last].kept and not config.allow_empty:
        raise NothingToPublish(f"nothing to publish: every record was removed ({counts_line(counts)}); "
                               "set allow_empty: true to publish an empty version")

    inputs, tokenizer = [paths.stage(last, s) for s in shards], None
    cuts = (stages.split_plan.submit(store, inputs, config.export.splits).result()
            if config.export.splits.stratify_by else None)
    if getattr(config.export, "tokenizer", None):  # text: token shards beside the Parquet (tasks.text.tokens)
        tokenizer = stages.prepare_tokenizer.submit(store, inputs, version, config.export, base, cuts).result()
        n_tokens = progress.results(stages.tokenize_shard.map(unmapped(store), unmapped(paths), unmapped(last), shards,
                                                              unmapped(version), unmapped(tokenizer)), "tokenize")
        logger.info("tokenized %d documents into %d tokens (tokenizer %s)", counts[last].kept, sum(n_tokens),
                    tokenizer["sha256"][:12])
        inputs = [paths.stage("tokenize", s) for s in shards]
    splits = export_stage(store, inputs, config, version, cuts, checks["export"], counts[last].kept)
    names = [s["path"] for split in splits.values() for s in split["shards"]]
    written = [layout.version(version, name) for name in names]
    exported_rows = sum(s["rows"] for s in splits.values())
    counts["export"] = StageCounts(counts[last].kept, exported_rows)
    laps.lap("export")
    gate_results.append(run_gate("export", checks, store, paths, written, names, config))
    laps.lap("gate export")
    groups_seen = group_balance(config, store, paths, shards, [*counts][:-1], cuts, caps)

    stage_counts = {name: c.as_dict() for name, c in counts.items()}
    manifest = {
        "name": config.export.name, "version": version, "modality": config.modality, "run_id": paths.run_id,
        "created": started.isoformat(),
        **export.describe_version(version, splits, base),
        "stages": stage_counts, "dedup": clustering, **({"tokenizer": tokenizer} if tokenizer else {}),
        **({"quality_classifier": quality} if quality else {}),
        **({"balance": groups_seen} if groups_seen else {}),
        "config": config.redacted(),
        "config_hash": config.fingerprint(), "sources": [f for c in collected for f in c.files],
        "gates": [{k: g[k] for k in ("gate", "policy", "success")} | {"expectations": g.get("expectations", [])}
                  for g in gate_results],
    }
    examples = report.gather_examples(store, paths, shards, written,
                                      tuple(s for s in counts if s not in ("collect", "export")))
    report_html = report.render(manifest, modality.charts(manifest), modality.noun,
                                report.examples_html(examples, modality.example, modality.noun),
                                balance_report.html(groups_seen, modality.noun))
    ledger.record(store, version, manifest["sources"])
    dedup_index.commit(store, version, shards, exported_rows, dedup_settings, semantic=clustering.get("semantic") and
                       semantic_index.index_entry(clustering["semantic"], config.dedup.semantic, shards))
    export.publish(store, version, manifest, export.dataset_card(manifest, modality.noun, modality.card(manifest)),
                   report_html, latest, paths.run_id)
    laps.lap("report and publish")
    summary = {"run_id": paths.run_id, "modality": config.modality, "version": version,
               "published": store.url(*layout.version(version)), "stages": stage_counts,
               "splits": {k: v["rows"] for k, v in splits.items()}, "documents": manifest["documents"],
               "base_version": manifest["base_version"], "gates": {g["gate"]: g["success"] for g in gate_results},
               "resumed": resumed if any(resumed.values()) else None, "seconds": laps.seconds}
    artifacts.publish_summary(summary, store.url(*layout.version(version, "report.html")))
    logger.info("published %s (%d %s, %d added)", summary["published"], summary["documents"], modality.noun,
                exported_rows)
    return summary


def counts_line(counts: dict[str, StageCounts]) -> str:
    return ", ".join(f"{stage}: {c.entered} in, {c.kept} kept" for stage, c in counts.items())


def nothing_new(run_id: str, files: int, latest: dict | None) -> dict:
    """The incremental run's quick exit: every source file is in the ledger, so nothing is read or published."""
    summary = {"run_id": run_id, "version": None, "published": None, "nothing_new": True, "source_files": files,
               "latest_version": latest and latest["version"]}
    message = (f"nothing new: all {files} source files were ingested already"
               + (f"; the latest version is still {latest['version']}" if latest else ""))
    artifacts.publish_nothing_new(run_id, message)
    get_run_logger().info(message)
    return summary


def run_pipeline(config: PipelineConfig, resume: str | None = None, server: TemporaryServer | None = None) -> dict:
    """Run the flow in this process, its tasks on the Dask cluster the config names (a local one by default),
    reporting to the Prefect API (`server`, or one started here, unless PREFECT_API_URL names one). Plain
    credentials in `config` stay in this process's environment: the run's parameters name them."""
    held = PipelineConfig.model_validate(secrets.held_in_environment(config.model_dump(mode="json")))
    with prefect_api(server):
        return curate(config=held, resume=resume)
