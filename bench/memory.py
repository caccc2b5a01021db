"""Peak memory of a whole `curate run`, per process: the flow, the temporary Prefect server, each Dask worker.

Runs `curate run` on corpora of real text (bench/corpus.py) of two sizes with the same shard size, and
samples the resident memory of every process in the run's tree every 0.2 s. A worker's peak should follow
the shard size, not the corpus size.

    .venv/bin/python bench/memory.py [20000 40000] [--shard-rows 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.corpus import build  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def role(process: psutil.Process) -> str:
    line = " ".join(process.cmdline())
    if "uvicorn" in line:
        return "prefect server"
    if "flows.cli" in line or line.endswith("curate run"):
        return "flow"
    if "resource_tracker" in line:
        return "multiprocessing resource tracker"
    if "multiprocessing" in line or "spawn" in line or "forkserver" in line:
        return f"dask worker {process.pid}"
    return f"other {process.pid}"


def sample(root: psutil.Process, peaks: dict, stop: threading.Event) -> None:
    """Peak RSS per process of `root`'s tree, and of the whole tree at once."""
    while not stop.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for p in tree:
            try:
                rss = p.memory_info().rss
                peaks[p.pid] = max(peaks.get(p.pid, (0, ""))[0], rss), peaks.get(p.pid, (0, role(p)))[1]
                total += rss
            except psutil.Error:
                continue
        peaks["tree"] = (max(peaks.get("tree", (0, ""))[0], total), "whole tree")
        time.sleep(0.2)


def measure(docs: int, shard_rows: int, work: Path) -> dict:
    corpus = work / f"corpus-{docs}"
    corpus.mkdir(parents=True, exist_ok=True)
    table = build(docs)
    per_file = 2000
    for i in range(0, docs, per_file):
        with open(corpus / f"part-{i // per_file:04d}.jsonl", "w") as f:
            for row in table.slice(i, per_file).to_pylist():
                f.write(json.dumps(row) + "\n")
    config = {"sources": [{"uri": str(corpus / "*.jsonl"), "id_field": "id"}], "output": str(work / f"out-{docs}"),
              "collect": {"shard_rows": shard_rows}, "preprocess": {"language": {"enabled": False}}}
    path = work / f"bench-{docs}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PREFECT_HOME": str(work / "home"), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(path)], env=env, cwd=work,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks, stop = {}, threading.Event()
    sampler = threading.Thread(target=sample, args=(psutil.Process(process.pid), peaks, stop))
    sampler.start()
    output = process.communicate()[0]
    stop.set()
    sampler.join()
    if process.returncode:
        raise SystemExit(output[-3000:])
    workers = sorted(rss for key, (rss, name) in peaks.items() if name.startswith("dask worker"))
    return {"docs": docs, "seconds": time.perf_counter() - started, "tree": peaks["tree"][0],
            "flow": max(rss for rss, name in peaks.values() if name == "flow"),
            "server": max((rss for rss, name in peaks.values() if name == "prefect server"), default=0),
            "workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", type=int, default=[20_000, 40_000])
    parser.add_argument("--shard-rows", type=int, default=2000)
    args = parser.parse_args()
    mib = lambda b: f"{b / 2 ** 20:,.0f} MiB"  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for docs in args.sizes:
            r = measure(docs, args.shard_rows, Path(tmp))
            print(f"{docs:>7,} docs, shards of {args.shard_rows:,} rows, {r['seconds']:.0f} s: whole tree "
                  f"{mib(r['tree'])}; flow {mib(r['flow'])}, Prefect server {mib(r['server'])}, workers "
                  + ", ".join(mib(w) for w in r["workers"]), flush=True)


if __name__ == "__main__":
    main()
