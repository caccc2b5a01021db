"""What a recurring ingest costs: the whole flow over a corpus in JSONL files, then an incremental run after
one new file lands, then a run with nothing new, against one full run over everything.

    .venv/bin/python bench/incremental_ingest.py [--docs 40000] [--files 8] [--new-docs 5000]

The corpus is bench/corpus.py's (real text of the shared sample, altered copies, planted near-duplicates);
the new file's documents are new text plus near copies of published ones. Quality filters are on; every
language is kept (the sample is multilingual). Prints wall time and counts of each run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import build  # noqa: E402
from flows.config import PipelineConfig  # noqa: E402
from flows.curate import prefect_api, run_pipeline  # noqa: E402


def write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def timed(config: PipelineConfig) -> tuple[float, dict]:
    started = time.perf_counter()
    summary = run_pipeline(config)
    return time.perf_counter() - started, summary


def line(what: str, seconds: float, summary: dict) -> str:
    if summary.get("nothing_new"):
        return f"{what:<34}{seconds:8.1f} s   nothing new"
    collect, dedup = summary["stages"]["collect"], summary["stages"]["dedup"]
    return (f"{what:<34}{seconds:8.1f} s   read {collect['in']:>7,}  dedup removed "
            f"{sum(dedup['rejected'].values()):>6,}  published {summary['documents']:>7,} "
            f"({sum(summary['splits'].values()):,} added)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=40_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--new-docs", type=int, default=5_000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-incremental")
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    raw = args.work / "raw"
    raw.mkdir(parents=True)
    rows = build(args.docs + args.new_docs, seed=1).to_pylist()
    per_file = -(-args.docs // args.files)
    for i in range(args.files):
        write_jsonl(rows[i * per_file:min((i + 1) * per_file, args.docs)], raw / f"part-{i:03d}.jsonl")

    def config(output: str, incremental: bool) -> PipelineConfig:
        return PipelineConfig.model_validate({
            "sources": [{"uri": str(raw / "*.jsonl"), "id_field": "id"}], "output": str(args.work / output),
            "incremental": incremental, "collect": {"shard_rows": 5_000},
            "preprocess": {"language": {"allowed": None, "min_score": 0}}})

    with prefect_api():
        print(f"{args.docs:,} documents in {args.files} files, then {args.new_docs:,} in one new file")
        print(line("first run (incremental, empty)", *timed(config("out", True))))
        write_jsonl(rows[args.docs:], raw / "new.jsonl")
        print(line("incremental run, one new file", *timed(config("out", True))))
        print(line("incremental run, nothing new", *timed(config("out", True))))
        print(line("full run over all files", *timed(config("full", False))))


if __name__ == "__main__":
    main()
