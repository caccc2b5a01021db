"""curate's cost curve: whole `curate run`s of growing size, timed and measured from outside.

    .venv/bin/python bench/scale.py text 10000 100000 1000000
    .venv/bin/python bench/scale.py images 1000 20000
    .venv/bin/python bench/scale.py audio 500 5000
    .venv/bin/python bench/scale.py versions 10 100000               # 10 stacked incremental versions of 100k
    .venv/bin/python bench/scale.py text 1000000 --kill-in dedup-filter   # kill -9 in dedup, resume

Corpora are built under --work (default /tmp/curate-scale) once and kept for later runs: text by
bench/scale_corpus.py (real text, about 10% planted near copies), pictures and clips by bench/scale_media.py.
Each run uses 2 workers and the default rules (language id on), and prints: wall time, records/s, MB/s
of source bytes, seconds per stage (from the run's own summary), peak RSS of every process of the run
(the flow, the Prefect server, the forkserver, each worker: sampled every 0.2 s), bytes written and the
shard count. For text it also measures dedup on samples of 2,000: recall is the share of planted pairs
(both reached dedup, exact word 5-gram Jaccard at least the threshold) of which dedup removed one;
precision is the share of `dedup.near` removals whose exact Jaccard to the document kept is at least the
threshold (a removal joined through a chain of near copies may fall below it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.compute as pc
import pyarrow.dataset as ds
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dedup_accuracy import jaccard, shingle_sets  # noqa: E402
from bench.scale_corpus import write_corpus  # noqa: E402
from bench.scale_media import write_collection  # noqa: E402

CURATE = str(ROOT / ".venv" / "bin" / "curate")
MiB = 2 ** 20


class Sampler(threading.Thread):
    """Peak RSS of every process in a tree, by role, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval, self.peaks, self.stopped = psutil.Process(pid), interval, {}, threading.Event()

    def role(self, p: psutil.Process, tree: dict[int, psutil.Process]) -> str:
        line = " ".join(p.cmdline())
        if p.pid == self.root.pid:
            return "flow"
        if "uvicorn" in line:
            return "prefect server"
        if "resource_tracker" in line:
            return "resource tracker"
        if "forkserver" in line:
            parent = tree.get(p.ppid())
            return f"worker {p.pid}" if parent and "forkserver" in " ".join(parent.cmdline()) else "forkserver"
        return f"other {p.pid}"

    def run(self) -> None:
        roles: dict[int, str] = {}
        while not self.stopped.is_set():
            try:
                tree = {p.pid: p for p in [self.root, *self.root.children(recursive=True)]}
            except psutil.NoSuchProcess:
                return
            for pid, p in tree.items():
                try:
                    roles.setdefault(pid, self.role(p, tree))
                    self.peaks[roles[pid]] = max(self.peaks.get(roles[pid], 0), p.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(self.interval)

    def stop(self) -> dict[str, int]:
        self.stopped.set()
        self.join()
        return self.peaks


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def curate_run(config: Path, *extra: str, kill_in: str | None = None) -> dict:
    """One `curate run`, measured; with `kill_in`, it is killed with -9 once that stage starts."""
    started = time.perf_counter()
    process = subprocess.Popen([CURATE, "run", str(config), *extra], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    sampler = Sampler(process.pid)
    sampler.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if re.search(r" - (run \S+.*: \d+/\d+ .* done|gate \S+ passed)", line):
            print("   ", line.rstrip()[-150:], flush=True)
        if kill_in and f" - {kill_in}: " in line:  # the stage's first progress line: it is well under way
            os.killpg(process.pid, signal.SIGKILL)
            print(f"    killed with -9 at: {line.strip()[:120]}", flush=True)
            break
    process.wait()
    peaks = sampler.stop()
    output = "".join(lines)
    seconds = time.perf_counter() - started
    if kill_in and process.returncode != -signal.SIGKILL:
        sys.exit(f"the run ended ({process.returncode}) before {kill_in} reported progress: nothing was killed")
    if kill_in:
        return {"killed": True, "seconds": seconds}
    if process.returncode:
        sys.exit(f"curate failed ({process.returncode}):\n{output[-4000:]}")
    stages = re.search(r"^seconds: (.*)$", output, re.M)
    return {"seconds": seconds, "peaks": peaks, "output": output,
            "stages": dict((name, float(s)) for name, s in
                           (part.rsplit(" ", 1) for part in stages.group(1).split(", "))) if stages else {}}


def write_config(path: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_dir(out: Path) -> Path:
    return max((out / "runs").iterdir(), key=lambda p: p.stat().st_mtime)


def ids_of(folder: Path, columns=("id",)):
    files = sorted(folder.glob("part-*.parquet"))
    return ds.dataset(files).to_table(columns=list(columns)) if files else None


def texts_of(run: Path, wanted: set[str]) -> dict[str, str]:
    """id -> text of the `wanted` documents of the run's preprocess output, one shard at a time."""
    texts = {}
    for f in sorted((run / "preprocess").glob("part-*.parquet")):
        t = ds.dataset(f).to_table(columns=["id", "text"], filter=pc.field("id").isin(list(wanted)))
        texts.update(zip(t["id"].to_pylist(), t["text"].to_pylist()))
    return texts


def pair_jaccard(texts: dict[str, str], a: list[str], b: list[str]) -> np.ndarray:
    """Exact word 5-gram Jaccard of each pair (a[k], b[k])."""
    return np.array([jaccard(x, y) for x, y in zip(shingle_sets([texts[i] for i in a], 5),
                                                    shingle_sets([texts[i] for i in b], 5))])


def text_accuracy(corpus: Path, run: Path, threshold: float, sample: int = 2000) -> dict:
    """Recall and precision on samples of the planted pairs and of the removals (module docstring)."""
    rng = np.random.default_rng(0)
    entered = set(ids_of(run / "preprocess")["id"].to_pylist())
    planted = [p for p in map(json.loads, open(corpus / "planted.jsonl")) if p["id"] in entered and p["of"] in entered]
    planted = [planted[k] for k in np.sort(rng.choice(len(planted), min(sample, len(planted)), replace=False))]
    removed = ids_of(run / "dedup" / "_rejected", ("id", "rule", "duplicate_of"))
    near = removed.filter(pc.equal(removed["rule"], "dedup.near"))
    near = near.take(np.sort(rng.choice(near.num_rows, min(sample, near.num_rows), replace=False)))
    gone = set(removed["id"].to_pylist())
    texts = texts_of(run, {p["id"] for p in planted} | {p["of"] for p in planted}
                     | set(near["id"].to_pylist()) | set(near["duplicate_of"].to_pylist()))
    similar = pair_jaccard(texts, [p["id"] for p in planted], [p["of"] for p in planted]) >= threshold
    found = np.array([p["id"] in gone or p["of"] in gone for p in planted], dtype=bool)
    kept_like = pair_jaccard(texts, near["id"].to_pylist(), near["duplicate_of"].to_pylist())
    return {"planted": len(planted), "similar": int(similar.sum()),
            "recall": float(found[similar].mean()) if similar.any() else 1.0, "near_removed": len(near),
            "precision": float((kept_like >= threshold).mean()) if len(kept_like) else 1.0}


def exported(out: Path) -> list | None:
    """(split, path, rows, sha256) of every exported shard of the output's version v1."""
    manifest = out / "versions" / "v1" / "manifest.json"
    if not manifest.exists():
        return None
    splits = json.loads(manifest.read_text())["splits"]
    return [(name, s["path"], s["rows"], s["sha256"]) for name, split in splits.items() for s in split["shards"]]


def text_size(work: Path, docs: int, kill_in: str | None) -> None:
    corpus = work / f"text-{docs}"
    info = write_corpus(corpus, docs, files=max(4, docs // 50_000))
    out = corpus / ("out-resumed" if kill_in else "out")
    shutil.rmtree(out, ignore_errors=True)
    config = write_config(corpus / "curate.yaml", {
        "sources": [{"uri": str(corpus / "docs" / "*.jsonl"), "id_field": "id"}], "output": str(out),
        "dask": {"n_workers": 2}, "export": {"name": f"scale-{docs}", "version": "v1"}})
    if kill_in:
        killed = curate_run(config, kill_in=kill_in)
        print(f"  killed after {killed['seconds']:.0f} s; resuming", flush=True)
        result = curate_run(config, "--resume")
        same = exported(out) == exported(corpus / "out")
        print(f"  the resumed run's version {'equals' if same else 'DIFFERS from'} the uninterrupted run's "
              "(every exported shard's rows and sha256)", flush=True)
    else:
        result = curate_run(config)
    report("text", docs, info["bytes"], out, result)
    accuracy = text_accuracy(corpus, run_dir(out), 0.8)
    print(f"  dedup: recall {accuracy['recall']:.4f} on {accuracy['similar']:,} of {accuracy['planted']:,} sampled "
          f"planted pairs at Jaccard >= 0.8; precision {accuracy['precision']:.4f} on {accuracy['near_removed']:,} "
          "sampled near removals", flush=True)
    manifest = json.loads((out / "versions" / "v1" / "manifest.json").read_text())
    print(f"  published {manifest['documents']:,} documents, stages "
          + ", ".join(f"{k} {v['in']:,}->{v['kept']:,}" for k, v in manifest["stages"].items()), flush=True)


def media_size(work: Path, kind: str, items: int) -> None:
    """A run over `items` pictures or clips (bench/scale_media.py), and what dedup did with the planted copies."""
    folder = work / f"{kind}-{items}"
    info = write_collection(folder, kind, items)
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    config = write_config(folder / "curate.yaml", {
        "modality": "image" if kind == "images" else "audio", "sources": [{"uri": str(folder / "files" / "*")}],
        "output": str(out), "dask": {"n_workers": 2}, "export": {"name": f"scale-{kind}-{items}", "version": "v1"}})
    result = curate_run(config)
    report(kind, items, info["bytes"], out, result)
    manifest = json.loads((out / "versions" / "v1" / "manifest.json").read_text())
    print("  " + ", ".join(f"{k} {v['in']:,}->{v['kept']:,}" for k, v in manifest["stages"].items())
          + "; rejected " + ", ".join(f"{rule} {n:,}" for stage in manifest["stages"].values()
                                      for rule, n in stage["rejected"].items()), flush=True)
    run = run_dir(out)
    entered = {Path(s).name for s in ids_of(run / "preprocess", ("source",))["source"].to_pylist()}
    gone = {Path(s).name for s in ids_of(run / "dedup" / "_rejected", ("source",))["source"].to_pylist()}
    # the collection holds copies of the shared files, not the files themselves: copies of one original
    # are duplicates of each other, and dedup at its best keeps one of them
    groups: dict[str, list[dict]] = {}
    for p in map(json.loads, open(folder / "planted.jsonl")):
        if p["file"] in entered:
            groups.setdefault(p["of"], []).append(p)
    groups = {of: copies for of, copies in groups.items() if len(copies) > 1}
    by_how: dict[str, list[bool]] = {}
    for copies in groups.values():
        for p in copies:
            by_how.setdefault(p["how"], []).append(p["file"] in gone)
    kept = [sum(p["file"] not in gone for p in copies) for copies in groups.values()]
    print(f"  {len(groups):,} originals with 2+ copies that reached dedup ({sum(map(len, groups.values())):,} copies): "
          f"{np.mean(kept) if kept else 0:.2f} copies kept per original (1.00: all found); share removed by variant: "
          + ", ".join(f"{how} {np.mean(v):.2f} of {len(v):,}" for how, v in sorted(by_how.items())), flush=True)


def versions(work: Path, count: int, per_version: int) -> None:
    """`count` incremental ingests of `per_version` new documents each, stacked on one output: what each costs
    as the published versions (and the dedup index they are matched against) grow."""
    files = max(1, per_version // 50_000)
    corpus = work / f"text-{count * per_version}"
    write_corpus(corpus, count * per_version, files=count * files)
    landing, out = work / "versions" / "landing", work / "versions" / "out"
    shutil.rmtree(work / "versions", ignore_errors=True)
    landing.mkdir(parents=True)
    config = write_config(work / "versions" / "curate.yaml", {
        "sources": [{"uri": str(landing / "*.jsonl"), "id_field": "id"}], "output": str(out),
        "incremental": True, "dask": {"n_workers": 2}, "export": {"name": "versions"}})
    parts = sorted((corpus / "docs").glob("part-*.jsonl"))
    for k in range(count):
        for part in parts[k * files:(k + 1) * files]:
            (landing / part.name).symlink_to(part)
        result = curate_run(config)
        manifest = json.loads((out / "versions" / (out / "LATEST").read_text().strip() / "manifest.json").read_text())
        dedup = manifest["dedup"]
        workers = sorted(v for name, v in result["peaks"].items() if name.startswith("worker"))
        steps = {name: s for name, s in result["stages"].items() if name.startswith("dedup ")}
        print(f"version {k + 1:2}: {result['seconds']:6.1f} s, dedup {sum(steps.values()):5.1f} s "
              f"({', '.join(f'{n[6:]} {v:.1f}' for n, v in steps.items())}); matched against "
              f"{dedup['published_shards']} published index shards; {manifest['documents']:,} documents published; "
              f"workers peak {', '.join(f'{w / MiB:,.0f}' for w in workers)} MiB; index "
              f"{du(out / 'index') / 1e6:,.0f} MB", flush=True)


def report(kind: str, records: int, source_bytes: int, out: Path, result: dict) -> None:
    seconds = result["seconds"]
    shards = len(list((run_dir(out) / "collect").glob("part-*.parquet")))
    peaks = result["peaks"]
    workers = sorted(v for k, v in peaks.items() if k.startswith("worker"))
    print(f"{kind} {records:>9,}: {seconds:7.1f} s  {records / seconds:8,.0f} records/s  "
          f"{source_bytes / seconds / 1e6:6.1f} MB/s  {shards} shards  wrote {du(out) / 1e9:.2f} GB", flush=True)
    print("  seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in result["stages"].items()), flush=True)
    print(f"  peak RSS: flow {peaks.get('flow', 0) / MiB:,.0f} MiB, server {peaks.get('prefect server', 0) / MiB:,.0f}"
          f" MiB, forkserver {peaks.get('forkserver', 0) / MiB:,.0f} MiB, workers "
          + ", ".join(f"{w / MiB:,.0f}" for w in workers) + " MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["text", "versions", "images", "audio"],
                        help="versions: SIZES are the number of stacked incremental versions and their documents each")
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate-scale"))
    parser.add_argument("--kill-in", help="kill the run with -9 when this task first reports progress (e.g. 'dedup-filter'), "
                                          "then resume it")
    args = parser.parse_args()
    if args.kind == "versions":
        versions(args.work, *args.sizes)
        return
    for size in args.sizes:
        if args.kind == "text":
            text_size(args.work, size, args.kill_in)
        else:
            media_size(args.work, args.kind, size)


if __name__ == "__main__":
    main()
