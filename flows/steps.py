"""The pipeline's steps that run as tasks over shards: each maps a stage's Prefect tasks (`tasks.stages`) on
the cluster and returns counts, so `flows.curate.pipeline` reads as the order of the stages."""

from functools import reduce

from prefect import get_run_logger, unmapped

from flows import artifacts, progress
from flows.config import PipelineConfig
from flows.runtime import cluster_slots
from tasks import export, gates, stages
from tasks.dedup import index as dedup_index
from tasks.dedup.steps import deduplicate
from tasks.export import balance, balance_report
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.records import StageCounts
from tasks.text import fasttext_vectors, semantic_index, semantic_steps


def dedup_stage(store: Store, paths: RunPaths, shards: list[str], version: str, documents: int, settings,
                check: gates.Check | None, laps: progress.Laps) -> tuple[StageCounts, dict]:
    """Dedup's steps as tasks over batches on the cluster, or, for a small run, all of them in one task
    (`dedup.one_task_up_to`)."""
    published = dedup_index.published_sources(store, settings)[1] if settings.against_published else 0
    if documents + published <= settings.one_task_up_to:
        done = stages.dedup_at_once.submit(store, paths, shards, version, documents, settings, check).result()
        laps.lap("dedup")
        return done
    return deduplicate(store, paths, shards, version, documents, settings,
                       laps.timed(stages.run_as_tasks(cluster_slots(), progress.results), "dedup "), check)


def semantic_stage(store: Store, paths: RunPaths, shards: list[str], stage: str, version: str,
                   settings) -> tuple[StageCounts, dict]:
    """Semantic dedup after exact and MinHash (tasks.text.semantic_steps): fit (or reuse the published
    embedding) and the clusters, embed per shard, pair cluster by cluster with each other and with the
    published vectors, remove."""
    model = fasttext_vectors.model_name(settings.semantic.model) if settings.semantic.model else None
    published = (semantic_index.published(store, settings.semantic, model) if settings.against_published
                 else semantic_index.Published(model))
    fitted = stages.semantic_fit.submit(store, [paths.stage(stage, s) for s in shards], published.vectors,
                                        settings.semantic, version, published.embedder).result()
    old = len(published.vectors)
    progress.results(stages.semantic_assign.map(unmapped(store), unmapped(paths), published.vectors, list(range(old)),
                                                unmapped(fitted)), "published vectors")
    progress.results(stages.semantic_embed.map(unmapped(store), unmapped(paths), unmapped(stage), shards,
                                               list(range(old, old + len(shards))), unmapped(fitted), unmapped(settings.keep),
                                               unmapped(settings.quality_column)), "embed")
    found = semantic_steps.merge(progress.results(stages.semantic_pairs.map(
        unmapped(store), unmapped(paths), unmapped(shards), unmapped(old), list(range(fitted.tasks)),
        unmapped(fitted.embedder.dims), unmapped(settings.semantic.threshold)), "semantic pairs"))
    counts = StageCounts.total(f.result() for f in stages.semantic_shard.map(
        unmapped(store), unmapped(paths), unmapped(stage), shards, [found.get(s, ([], [], [])) for s in shards],
        unmapped(version), unmapped(fitted.embedder.dims)))
    return counts, {"documents": fitted.documents, "published": fitted.published, "clusters": len(fitted.centroids),
                    "removed": sum(len(rows) for rows, _, _ in found.values()),
                    "embedder": published.embedder or version, "dims": fitted.embedder.dims}


def quality_top_stage(store: Store, paths: RunPaths, shards: list[str], stage: str,
                      keep_top: float) -> tuple[StageCounts, dict]:
    """The quality classifier's keep_top cut over every shard of `stage` (tasks.text.quality_top)."""
    top = stages.quality_top_plan.submit(store, [paths.stage(stage, s) for s in shards], keep_top).result()
    return StageCounts.total(f.result() for f in stages.quality_top_shard.map(
        unmapped(store), unmapped(paths), unmapped(stage), shards, unmapped(top))), top


def export_stage(store: Store, inputs: list[tuple[str, ...]], config: PipelineConfig, version: str, cuts: dict | None,
                 check: gates.Check | None, records: int) -> dict[str, dict]:
    """The splits' shards, a task per split side by side, or for a small run all in one (`export.one_task_up_to`)."""
    if records <= config.export.one_task_up_to:
        return stages.export_splits.submit(store, inputs, config.export, version, config.modality, cuts, check).result()
    exported = {split: stages.export_split.submit(store, inputs, split, config.export, version, config.modality, cuts,
                                                  check) for split in export.SPLITS}
    return {split: f.result() for split, f in exported.items()}


def group_balance(config: PipelineConfig, store: Store, paths: RunPaths, shards: list[str], stage_names: list[str],
                  cuts: dict | None, caps: dict | None) -> dict | None:
    """The groups of `balance.by` (and of the capped column) at every stage and in every split, counted per
    shard on the cluster (tasks.export.balance_report)."""
    columns = list(dict.fromkeys([*config.balance.by, *([caps["column"]] if caps else [])]))
    if not columns:
        return None
    merged = reduce(balance.merged, (f.result() for f in stages.balance_counts.map(
        unmapped(store), unmapped(paths), shards, unmapped(columns), unmapped(stage_names),
        unmapped(config.export.splits), unmapped(cuts))), {"stages": {}, "removed": {}, "splits": {}})
    return {"stages": stage_names, "columns": balance_report.summarize(merged, stage_names, columns), "caps": caps}


def gate_check(gate: str, config: PipelineConfig, paths: RunPaths) -> gates.Check | None:
    """The gate's suite, for the tasks of the stage before it; None when the gate is off."""
    if getattr(config.gates, gate) == "off":
        return None
    return gates.Check(gates.load_suite(gate, config.modality, config.gates.suites_dir, config.redacted()),
                       paths.gate(gate), config.gates.data_docs)


def run_gate(gate: str, checks: dict[str, gates.Check | None], store: Store, paths: RunPaths,
             shard_parts: list[tuple[str, ...]], names: list[str], config: PipelineConfig) -> dict:
    """Decide the gate on every shard (at `shard_parts`, called `names`), save the report, publish artifacts,
    apply the policy. The stage's tasks validated the shards they wrote; a shard without a result for this
    very suite (a resumed run's, its suite file edited since) is validated here."""
    policy, check = getattr(config.gates, gate), checks[gate]
    if check is None:
        return {"gate": gate, "policy": "off", "success": None, "expectations": []}
    validated = check.saved(store, names)
    todo = [(parts, name) for parts, name in zip(shard_parts, names) if name not in validated]
    futures = stages.validate_shard.map(unmapped(store), [p for p, _ in todo], unmapped(gate), [n for _, n in todo],
                                        unmapped(check))
    validated.update({name: f.result() for (_, name), f in zip(todo, futures)})
    result = gates.aggregate(gate, check.suite, [validated[name] for name in names], policy)
    store.write_json(result, *paths.gate_result(gate))
    store.write_bytes(gates.docs_index(result).encode(), *check.docs, "index.html")
    artifacts.publish_gate(result, store.url(*check.docs, "index.html"))
    logger = get_run_logger()
    if not result["success"]:
        message = gates.failure_message(result)
        if policy == "fail":
            raise gates.GateFailed(message)
        logger.warning("%s (policy warn: continuing)", message)
    else:
        logger.info("gate %s passed: %d rows in %d shards", gate, result["rows"], result["shards"])
    return result
