"""The Prefect tasks: each reads its shard(s) from storage, calls a plain stage function, writes the
outputs and returns small counts. Paths, not data, travel between tasks; nothing here holds logic.
"""

from __future__ import annotations

from typing import Callable

import pyarrow.compute as pc
from prefect import task, unmapped

from tasks import collect, export, gates, modalities, runs
from tasks.dedup import steps as dedup_steps
from tasks.export import balance, splits
from tasks.io import layout
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.records import StageCounts
from tasks.text import quality_top, semantic, semantic_steps, tokens
from tasks.text.preprocess import quality_classifier

PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry I/O and network errors, which may go away; an error the data or the
    code causes would fail the same way again, so it fails the task at once."""
    error = state.data
    return isinstance(error, (OSError, TimeoutError)) and not isinstance(error, PERMANENT)


IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient)


@task(name="collect", task_run_name="collect unit {unit} ({n_files} files)", **IO_RETRIES)
def collect_unit(files: list[collect.InputFile], sources: list[collect.Source], settings: collect.CollectSettings,
                 modality: str, store: Store, paths: RunPaths, unit: int, n_files: int,
                 check: gates.Check | None) -> collect.Collected:
    result = collect.collect_unit(files, sources, settings, modalities.get(modality), store, paths, unit, check)
    runs.mark_done(store, paths, "collect", collect.unit_name(unit), result.as_dict())
    return result


@task(name="preprocess", task_run_name="preprocess {shard}", **IO_RETRIES)
def preprocess_shard(store: Store, paths: RunPaths, shard: str, modality: str, settings,
                     check: gates.Check | None) -> StageCounts:
    """Preprocess the shard, then validate what it kept for the clean gate (`check`)."""
    table = store.read_table(*paths.stage("collect", shard))
    kept, rejected = modalities.get(modality).preprocess_shard(table, settings)
    dedup_steps.write_stage_outputs(store, paths, "preprocess", shard, kept, rejected)
    if check:
        check(store, kept, shard)
    counts = StageCounts.of(table.num_rows, kept, rejected)
    runs.mark_done(store, paths, "preprocess", shard, counts.as_dict())
    return counts


@task(name="quality classifier", task_run_name="quality classifier: train or read", **IO_RETRIES)
def prepare_quality_classifier(store: Store, version: str, settings) -> tuple[dict, object]:
    """The text quality model, trained on the user's documents or read from its path, saved in the version;
    returns what the manifest says of it and the model for the preprocess tasks."""
    model, data, identity = quality_classifier.prepare(settings)
    store.write_bytes(data, *layout.version(version, identity["file"]))
    return identity, model


@task(name="export", task_run_name="export {split}", **IO_RETRIES)
def export_split(store: Store, inputs: list[tuple[str, ...]], split: str, settings: export.ExportSettings,
                 version: str, modality: str, cuts: dict | None, check: gates.Check | None) -> dict:
    return export.export_split(store, inputs, split, settings, version, modalities.get(modality), cuts, check)


@task(name="export", task_run_name="export every split", **IO_RETRIES)
def export_splits(store: Store, inputs: list[tuple[str, ...]], settings: export.ExportSettings, version: str,
                  modality: str, cuts: dict | None, check: gates.Check | None) -> dict[str, dict]:
    """Every split in one task run, for a run so small that a task run per split costs more than its work."""
    return {split: export.export_split(store, inputs, split, settings, version, modalities.get(modality), cuts, check)
            for split in export.SPLITS}


@task(name="balance-plan", task_run_name="balance caps", **IO_RETRIES)
def balance_plan(store: Store, inputs: list[tuple[str, ...]], settings: balance.BalanceSettings) -> dict:
    return balance.plan(store, inputs, settings)


@task(name="balance", task_run_name="balance {shard}", **IO_RETRIES)
def balance_shard(store: Store, paths: RunPaths, stage: str, shard: str, settings: balance.BalanceSettings,
                  decided: dict) -> StageCounts:
    table = store.read_table(*paths.stage(stage, shard))
    kept, rejected = balance.capped(table, settings, decided)
    dedup_steps.write_stage_outputs(store, paths, "balance", shard, kept, rejected)
    return StageCounts.of(table.num_rows, kept, rejected)


@task(name="quality-top-plan", task_run_name="quality classifier: the keep_top cut", **IO_RETRIES)
def quality_top_plan(store: Store, inputs: list[tuple[str, ...]], keep_top: float) -> dict:
    return quality_top.plan(store, inputs, keep_top)


@task(name="quality-top", task_run_name="keep_top {shard}", **IO_RETRIES)
def quality_top_shard(store: Store, paths: RunPaths, stage: str, shard: str, decided: dict) -> StageCounts:
    table = store.read_table(*paths.stage(stage, shard))
    kept, rejected = quality_top.cut(table, decided)
    dedup_steps.write_stage_outputs(store, paths, "quality_top", shard, kept, rejected)
    return StageCounts.of(table.num_rows, kept, rejected)


@task(name="semantic-fit", task_run_name="semantic dedup: fit the embedding and the clusters", **IO_RETRIES)
def semantic_fit(store: Store, inputs: list[tuple[str, ...]], published: list[tuple[str, ...]],
                 settings: semantic.SemanticDedupSettings, version: str, reuse: str | None) -> semantic_steps.Fitted:
    return semantic_steps.fit(store, inputs, published, settings, version, reuse)


@task(name="semantic-embed", task_run_name="embed {shard}", **IO_RETRIES)
def semantic_embed(store: Store, paths: RunPaths, stage: str, shard: str, source: int, fitted: semantic_steps.Fitted,
                   keep: str, quality_column: str) -> int:
    return semantic_steps.embed(store, paths, stage, shard, source, fitted, keep, quality_column)


@task(name="semantic-assign", task_run_name="published vectors {source}", **IO_RETRIES)
def semantic_assign(store: Store, paths: RunPaths, parts: tuple[str, ...], source: int,
                    fitted: semantic_steps.Fitted) -> int:
    return semantic_steps.assign(store, paths, parts, source, fitted)


@task(name="semantic-pairs", task_run_name="semantic pairs {task}", **IO_RETRIES)
def semantic_pairs(store: Store, paths: RunPaths, shards: list[str], published: int, task: int, dims: int,
                   threshold: float) -> dict:
    return semantic_steps.pairs(store, paths, shards, published, task, dims, threshold)


@task(name="semantic", task_run_name="semantic dedup {shard}", **IO_RETRIES)
def semantic_shard(store: Store, paths: RunPaths, stage: str, shard: str, found: tuple[list, list, list],
                   version: str, dims: int) -> StageCounts:
    """Drop the shard's semantic duplicates (`found`: its rows, the ids they duplicate, the cosines) and keep
    the vectors of the rest in the version's index."""
    return semantic_steps.remove(store, paths, stage, shard, found, version, dims)


@task(name="balance-counts", task_run_name="balance counts {shard}", **IO_RETRIES)
def balance_counts(store: Store, paths: RunPaths, shard: str, columns: list[str], stages: list[str],
                   split_settings: splits.SplitSettings, cuts: dict | None) -> dict:
    return balance.count_shard(store, paths, shard, columns, stages, split_settings, cuts)


@task(name="split-plan", task_run_name="stratified splits", **IO_RETRIES)
def split_plan(store: Store, inputs: list[tuple[str, ...]], settings: splits.SplitSettings) -> dict:
    return splits.stratified_cuts(store, inputs, settings)


@task(name="tokenizer", task_run_name="tokenizer", **IO_RETRIES)
def prepare_tokenizer(store: Store, inputs: list[tuple[str, ...]], version: str, settings: export.ExportSettings,
                      base: dict | None, cuts: dict | None) -> dict:
    return tokens.prepare(store, inputs, version, settings, base, cuts)


@task(name="tokenize", task_run_name="tokenize {shard}", **IO_RETRIES)
def tokenize_shard(store: Store, paths: RunPaths, stage: str, shard: str, version: str, tokenizer: dict) -> int:
    """The shard of `stage` with its documents' token ids, for export; returns its token count."""
    table = tokens.tokenize(store.read_table(*paths.stage(stage, shard)),
                            store.read_bytes(*layout.version(version, tokenizer["file"])), tokenizer)
    store.write_table(table, *paths.stage("tokenize", shard))
    return int(pc.sum(table[tokens.N_TOKENS]).as_py() or 0)


@task(name="validate", task_run_name="gate {gate}: {shard}", **IO_RETRIES)
def validate_shard(store: Store, parts: tuple[str, ...], gate: str, shard: str, check: gates.Check) -> dict:
    """A shard with no result saved for the gate's suite: one a resumed run took as it was, its suite file
    edited since. The stage's own tasks validate what they write."""
    return check(store, store.read_table(*parts), shard)


@task(name="dedup", task_run_name="dedup, every step in one task", **IO_RETRIES)
def dedup_at_once(store: Store, paths: RunPaths, shards: list[str], version: str, documents: int, settings,
                  check: gates.Check | None) -> tuple[StageCounts, dict]:
    """Every dedup step in one task run, for a run so small that a task run per step costs more than its work."""
    return dedup_steps.deduplicate(store, paths, shards, version, documents, settings, check=check)


def run_batch(step, items: list, constants: dict) -> list:
    return dedup_steps.run_serially(step, items, **constants)


LABELS = {  # how an item of each dedup step reads in a task run's name
    dedup_steps.sketch: lambda shard, _: f"sketch {shard}",
    dedup_steps.repeated_ids: lambda part, _: f"repeated ids, ids {part}",
    dedup_steps.candidates: lambda work, constants: dedup_steps.candidates_label(work, constants["parts"]),
    dedup_steps.clusters: lambda *_: "clusters",
    dedup_steps.remove: lambda shard, _: f"dedup {shard}",
}


def batch_run_name(parameters: dict) -> str:
    """`sketch part-00000-0000.parquet .. part-00001-0003.parquet (4)`: the batch's first and last item."""
    label, items = LABELS[parameters["step"]], parameters["items"]
    first, last = label(items[0], parameters["constants"]), label(items[-1], parameters["constants"])
    return first if len(items) == 1 else f"{first} .. {last.split(' ')[-1]} ({len(items)})"


DEDUP_TASKS = {step: task(name=name, task_run_name=batch_run_name, **IO_RETRIES)(run_batch) for step, name in (
    (dedup_steps.sketch, "dedup-sketch"), (dedup_steps.repeated_ids, "dedup-ids"),
    (dedup_steps.candidates, "dedup-candidates"), (dedup_steps.clusters, "dedup-clusters"),
    (dedup_steps.remove, "dedup-filter"))}


BATCH_ITEMS = 8  # items a dedup batch holds at least, unless the cluster has more threads than batches

RECORDS = {  # the records one finished item of a dedup step handled, for progress
    dedup_steps.sketch: lambda rows: rows,
    dedup_steps.remove: lambda counts: counts.entered,
}


def run_as_tasks(slots: int, gather: Callable | None = None) -> dedup_steps.Executor:
    """The dedup executor of the flow: a step's items are cut into batches in order, each one run of the step's
    task: one batch per worker thread (`slots`), more for big runs so that no batch holds much more than
    BATCH_ITEMS items and progress shows. After the filters a shard may hold a few hundred documents, and a
    task run per shard would cost more than its work. `gather(futures, stage, unit, records)` waits for the
    batches (flows.progress.results); without it, each is waited for in turn."""
    def run(step, items: list, **constants) -> list:
        n = min(len(items), max(slots, len(items) // BATCH_ITEMS))
        batches = [items[i * len(items) // n:(i + 1) * len(items) // n] for i in range(n)]
        futures = DEDUP_TASKS[step].map(unmapped(step), batches, unmapped(constants))
        count = RECORDS.get(step)
        done = (gather(futures, DEDUP_TASKS[step].name, f"batches of {len(items)} items",
                       count and (lambda batch: sum(map(count, batch))))
                if gather else [f.result() for f in futures])
        return [result for batch in done for result in batch]
    return run
