"""The whole pipeline, end to end: `curate run` against datatrove's equivalent, on the same real text.

    .venv/bin/python bench/pipeline_vs_datatrove.py [--docs 10000 50000] [--files 4] [--workers 2]

The corpus (bench/corpus.py: windows of ~750 words of the real sample, about 4.5 KB per document) is
written as `--files` JSONL files. Both tools run the same rules with language identification off:
Gopher repetition and quality, C4, PII redaction, then MinHash near-duplicate removal, on `--workers`
worker processes.

- curate: the whole `curate run CONFIG` command, timed from outside: the temporary Prefect server, the
  Dask cluster, collect, preprocess, dedup, export and all four Great Expectations gates.
- datatrove 0.10.1, installed into a throw-away venv next to the corpus (never into the project):
  JsonlReader -> GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter -> PIIFormatter ->
  JsonlWriter, then its four MinHash stages (signatures, buckets, cluster, filter), with
  LocalPipelineExecutor(workers=N), also timed from outside as one command.

It also times a `curate run` of 20 documents: the fixed cost of a run (server, cluster, imports, gates).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.corpus import build  # noqa: E402
from bench.dedup_vs_datatrove import DATATROVE_JOB, count_jsonl, datatrove_python  # noqa: E402


def write_corpus(docs: int, files: int, folder: Path) -> float:
    """`docs` documents in `files` JSONL files; returns their size in MB."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rows = build(docs, words=750).to_pylist()
    per_file = -(-len(rows) // files)
    for i in range(files):
        with open(folder / f"part-{i:02d}.jsonl", "w", encoding="utf-8") as f:
            for row in rows[i * per_file:(i + 1) * per_file]:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e6


def run_curate(corpus: Path, out: Path, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    config = {"sources": [{"uri": str(corpus / "*.jsonl"), "id_field": "id"}], "output": str(out),
              "preprocess": {"language": {"enabled": False}}, "dask": {"n_workers": workers},
              "export": {"name": "bench", "version": "v1"}}
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "curate"), "run", str(path)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"curate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "versions" / "v1" / "manifest.json").read_text())
    shards = len(list(next((out / "runs").iterdir()).joinpath("collect").glob("part-*.parquet")))
    return {"seconds": seconds, "kept": manifest["stages"]["preprocess"]["kept"], "published": manifest["documents"],
            "shards": shards}


def run_datatrove(python: Path, corpus: Path, work: Path, workers: int, files: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([str(python), "-c", DATATROVE_JOB, str(corpus), str(work), str(workers), str(files),
                           "filters"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"datatrove failed:\n{done.stderr[-3000:]}")
    return {"seconds": seconds, "stages": json.loads(done.stdout.strip().splitlines()[-1]),
            "kept": count_jsonl(work / "filtered"), "published": count_jsonl(work / "deduplicated")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench")
    args = parser.parse_args()
    python = datatrove_python(args.work)

    tiny = args.work / "corpus-20"
    write_corpus(20, 1, tiny)
    fixed = run_curate(tiny, args.work / "curate-out-20", args.workers)
    print(f"fixed cost: curate run of 20 documents {fixed['seconds']:.1f} s", flush=True)
    for docs in args.docs:
        corpus = args.work / f"corpus-{docs}"
        megabytes = write_corpus(docs, args.files, corpus)
        print(f"corpus: {docs:,} documents, {megabytes:.0f} MB in {args.files} JSONL files, {args.workers} workers",
              flush=True)
        ours = run_curate(corpus, args.work / f"curate-out-{docs}", args.workers)
        print(f"  curate run   {ours['seconds']:7.1f} s  {docs / ours['seconds']:7.0f} docs/s  {ours['shards']} shards; "
              f"kept by the rules {ours['kept']:,}, published {ours['published']:,}", flush=True)
        theirs = run_datatrove(python, corpus, args.work / f"datatrove-{docs}", args.workers, args.files)
        print(f"  datatrove    {theirs['seconds']:7.1f} s  {docs / theirs['seconds']:7.0f} docs/s  stages {theirs['stages']}; "
              f"kept by the rules {theirs['kept']:,}, published {theirs['published']:,}", flush=True)
        print(f"  curate is {theirs['seconds'] / ours['seconds']:.1f}x faster end to end", flush=True)


if __name__ == "__main__":
    main()
