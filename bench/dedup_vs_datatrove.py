"""curate's dedup stage against datatrove's 4-stage MinHash pipeline, on the same corpus, 1 and 2 workers.

    .venv/bin/python bench/dedup_vs_datatrove.py [--docs 50000] [--workers 1 2] [--skip-datatrove]

The corpus (bench/corpus.py: real text in ~500-word documents) is written once as Parquet shards in the
preprocess stage's layout for curate and as JSONL files with the same split for datatrove. curate runs its
dedup stage (sketch, candidates, clusters, filter: exact and near, with verification) as a Prefect flow on
a local Dask cluster of N single-threaded worker processes; the time is that of the stage inside the flow,
on workers that have imported the stage's modules (as they have after preprocess in a real run).
datatrove 0.10.1 (its MinhashConfig defaults, 64-bit hashes) runs signatures, buckets, cluster and filter
with LocalPipelineExecutor(workers=N); it is installed into a throw-away venv next to the corpus, never
into the project. Both read their input and write their output on the local disk. Peak memory is the
largest resident set any worker process reached (sampled every 50 ms); CPU seconds are split between the
workers and the orchestration (the flow's process and the Prefect server), which share this machine's cores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
from prefect import flow, task
from prefect_dask import DaskTaskRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import build, write_shards  # noqa: E402
from flows.config import DaskSettings  # noqa: E402
from flows.runtime import cluster_for, cluster_slots, prefect_api  # noqa: E402
from tasks.dedup.steps import deduplicate  # noqa: E402
from tasks.io.layout import RunPaths  # noqa: E402
from tasks.stages import run_as_tasks  # noqa: E402
from tasks.text.dedup import TextDedupSettings as DedupSettings  # noqa: E402
from tasks.io.storage import Store  # noqa: E402

DATATROVE = "datatrove[io,processing]==0.10.1"
DATATROVE_JOB = '''
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

src, work, workers, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = MinhashConfig(hash_config=HashConfig(precision=64))
stages = []
if sys.argv[5:] == ["filters"]:  # bench/pipeline_vs_datatrove.py: the quality rules and PII first
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.formatters import PIIFormatter

    stages.append(("filters", [JsonlReader(src), GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
                               PIIFormatter(), JsonlWriter(f"{work}/filtered")], files))
    src = f"{work}/filtered"
stages += [
    ("signatures", [JsonlReader(src), MinhashDedupSignature(output_folder=f"{work}/signatures", config=config)], files),
    ("buckets", [MinhashDedupBuckets(input_folder=f"{work}/signatures", output_folder=f"{work}/buckets",
                                     config=config)], config.num_buckets),
    ("cluster", [MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids",
                                     config=config)], 1),
    ("filter", [JsonlReader(src), MinhashDedupFilter(input_folder=f"{work}/remove_ids",
                                                     exclusion_writer=JsonlWriter(f"{work}/removed")),
                JsonlWriter(f"{work}/deduplicated")], files),
]
times = {}
for name, pipeline, tasks in stages:
    started = time.perf_counter()
    LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks),
                          logging_dir=f"{work}/logs/{name}").run()
    times[name] = round(time.perf_counter() - started, 2)
print(json.dumps(times))
'''


class ProcessMonitor:
    """Samples every 50 ms: the largest RSS of any worker process, and CPU seconds used by the workers and by
    the orchestration (this process, where the flow runs, and the Prefect server it started)."""

    def __init__(self):
        self.peak, self._stop, self._cpu, self.samples = 0, threading.Event(), {}, []

    def _poll(self):
        me = psutil.Process()
        while not self._stop.wait(0.05):
            self._cpu[me.pid] = ("orchestration", sum(me.cpu_times()[:2]))
            for child in me.children(recursive=True):
                try:
                    with child.oneshot():
                        role = "orchestration" if "uvicorn" in " ".join(child.cmdline()) else "workers"
                        self._cpu[child.pid] = (role, sum(child.cpu_times()[:2]))
                        if role == "workers":
                            self.peak = max(self.peak, child.memory_info().rss)
                except psutil.Error:
                    pass
            totals = {"workers": 0.0, "orchestration": 0.0}
            for role, seconds in self._cpu.values():
                totals[role] += seconds
            self.samples.append((time.time(), totals))

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per role from the last sample before `start` to the first after `end`."""
        before = [c for t, c in self.samples if t <= start][-1]
        after = next(c for t, c in self.samples if t >= end)
        return {role: after[role] - before[role] for role in before}

    def __enter__(self):
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@task
def warm_up(settings: DedupSettings) -> None:
    """Import the stage modules and load the compiled kernel, as the preprocess stage has in a real run."""
    from tasks import dedup

    dedup.sketch_shard(pa.table({"id": ["w"], "text": ["warm up"]}), settings)
    time.sleep(1)  # long enough that every worker gets warm-up tasks


@flow(name="bench-dedup")
def dedup_stage(store: Store, run: RunPaths, shards: list[str], documents: int, settings: DedupSettings) -> dict:
    for f in warm_up.map([settings] * 8):
        f.result()
    started = time.time()
    counts, clustering = deduplicate(store, run, shards, "bench", documents, settings,
                                     run_as_tasks(cluster_slots()))
    return {"started": started, "seconds": time.time() - started, "counts": counts.as_dict(), "clustering": clustering}


def run_curate(root: Path, shards: list[str], documents: int, workers: int) -> dict:
    store, run = Store(str(root)), RunPaths("bench")
    for leftover in (run.stage("dedup"), ("index",)):
        store.remove(*leftover)
    runner = DaskTaskRunner(cluster_class="distributed.LocalCluster", **cluster_for(
        DaskSettings(n_workers=workers, threads_per_worker=1, memory_limit="8GiB"), {}))
    with ProcessMonitor() as monitor:
        result = dedup_stage.with_options(task_runner=runner)(store, run, shards, documents, DedupSettings())
    cpu = monitor.cpu_between(result["started"], result["started"] + result["seconds"])
    return result | {"peak_worker_rss": monitor.peak, "cpu": cpu}


def count_jsonl(folder: Path) -> int:
    """Documents in a datatrove JsonlWriter's output (gzipped by default)."""
    return sum(1 for f in folder.glob("*.jsonl*") for _ in (gzip.open(f) if f.suffix == ".gz" else open(f, "rb")))


def datatrove_python(where: Path) -> Path:
    venv = where / "datatrove-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {DATATROVE} into {venv} (throw-away)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DATATROVE, "spacy"], check=True)
    return python


def run_datatrove(python: Path, jsonl: Path, work: Path, workers: int, files: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    with ProcessMonitor() as memory:
        out = subprocess.run([str(python), "-c", DATATROVE_JOB, str(jsonl), str(work), str(workers), str(files)],
                             capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"datatrove failed:\n{out.stderr[-3000:]}")
    stages = json.loads(out.stdout.strip().splitlines()[-1])
    removed = count_jsonl(work / "removed")
    return {"seconds": sum(stages.values()), "wall": time.perf_counter() - started, "stages": stages,
            "removed": removed, "peak_worker_rss": memory.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--shard-rows", type=int, default=2_500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench")
    parser.add_argument("--skip-datatrove", action="store_true")
    args = parser.parse_args()

    corpus = build(args.docs)
    megabytes = sum(len(t.encode()) for t in corpus["text"].to_pylist()) / 1e6
    root = args.work / f"curate-{args.docs}"
    shutil.rmtree(root, ignore_errors=True)
    shards = write_shards(corpus, root.joinpath(*RunPaths("bench").stage("preprocess")), args.shard_rows,
                          jsonl=None if args.skip_datatrove else args.work / f"jsonl-{args.docs}")
    print(f"corpus: {args.docs} documents, {megabytes:.0f} MB, {len(shards)} shards of {args.shard_rows}", flush=True)

    results = {}
    with prefect_api():
        for w in args.workers:
            results[("curate", w)] = r = run_curate(root, shards, args.docs, w)
            print(f"curate    {w} worker(s): {r['seconds']:7.1f} s {args.docs / r['seconds']:9.0f} docs/s  "
                  f"removed {args.docs - r['counts']['kept']}  peak worker RSS {r['peak_worker_rss'] / 2**20:.0f} MiB  "
                  f"CPU s: workers {r['cpu']['workers']:.1f}, orchestration {r['cpu']['orchestration']:.1f}", flush=True)
            print(f"          {r['clustering']}", flush=True)
    if not args.skip_datatrove:
        python = datatrove_python(args.work)
        for w in args.workers:
            results[("datatrove", w)] = r = run_datatrove(python, args.work / f"jsonl-{args.docs}",
                                                          args.work / f"datatrove-{args.docs}", w, len(shards))
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
            print(f"datatrove {w} worker(s): {r['seconds']:7.1f} s {args.docs / r['seconds']:9.0f} docs/s  "
                  f"removed {r['removed']}  peak worker RSS {r['peak_worker_rss'] / 2**20:.0f} MiB  ({stages})", flush=True)
    print()
    for w in args.workers:
        line = f"{w} worker(s): curate {args.docs / results[('curate', w)]['seconds']:,.0f} docs/s"
        if ("datatrove", w) in results:
            ratio = results[("datatrove", w)]["seconds"] / results[("curate", w)]["seconds"]
            line += f", datatrove {args.docs / results[('datatrove', w)]['seconds']:,.0f} docs/s, curate/datatrove {ratio:.1f}x"
        print(line)
    if len(args.workers) > 1:
        lo, hi = min(args.workers), max(args.workers)
        print(f"curate scaling {lo} -> {hi} workers: {results[('curate', lo)]['seconds'] / results[('curate', hi)]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
