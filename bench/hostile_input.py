"""What hostile source files cost collect: seconds and peak memory of one `collect_unit` per case, each in a
process of its own with a time limit, plus the throughput of an ordinary zstd JSONL file (the caps must
not slow the common case). Only the API every version of curate has is used, so the same script measures
a checkout before and after a change:

    .venv/bin/python bench/hostile_input.py [--root /tmp/curate-hostile] [--timeout 120]
    (cd /tmp/old-checkout && /work/main/.venv/bin/python /work/main/bench/hostile_input.py --code .)

Cases: one 32 MiB line (zstd, 1 KB on disk), an 8 KB zstd bomb of 256 MiB of zeros, a .txt.gz bomb
(16 MiB on disk, 16 GiB inside), and ~120 MB of real documents (the shared sample, repeated) as zstd JSONL.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import zstandard

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sample_text.jsonl.gz"

RUN_ONE = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30, 12 * 2**30))  # a bomb read whole fails here, not the machine
sys.path.insert(0, sys.argv[1])
from tasks.collect import collect_unit, discover
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.text import TEXT, TextSource
sources = [TextSource(uri=sys.argv[2], **({"format": "txt"} if sys.argv[2].endswith(".txt.gz") else {}))]
started = time.perf_counter()
result = collect_unit(discover(sources, TEXT), sources, TEXT.collect(), TEXT, Store(sys.argv[3]), RunPaths("b"), 0)
print(json.dumps({"seconds": round(time.perf_counter() - started, 2), "counts": result.counts.as_dict(),
                  "first_error": next(iter(result.first_errors.values()), None),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def make_cases(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    cases = {}
    line = json.dumps({"id": "long", "text": "word " * (32 * 2**20 // 5)}).encode()
    cases["one 32 MiB line (zstd)"] = root / "long-line.jsonl.zst"
    cases["one 32 MiB line (zstd)"].write_bytes(zstandard.ZstdCompressor(level=19).compress(line + b"\n"))
    cases["zstd bomb, 256 MiB of zeros"] = root / "bomb.jsonl.zst"
    cases["zstd bomb, 256 MiB of zeros"].write_bytes(zstandard.ZstdCompressor(level=19).compress(bytes(256 * 2**20)))
    gz = root / "bomb.txt.gz"
    if not gz.exists():
        with gzip.open(gz, "wb", compresslevel=9) as f:
            block = bytes(2**24)
            for _ in range(1024):  # 16 GiB of zeros, about 16 MiB on disk
                f.write(block)
    cases["txt.gz bomb, 16 GiB inside"] = gz
    docs = root / "docs.jsonl.zst"
    if not docs.exists():
        with gzip.open(SHARED, "rb") as f:
            lines = [ln for ln in f.read().split(b"\n") if ln.strip()]
        target, out, n = 100 * 2**20, [], 0
        while n < target:
            for i, ln in enumerate(lines):
                record = json.loads(ln)
                record["id"] = f"{len(out)}"
                out.append(json.dumps(record).encode())
                n += len(out[-1])
        docs.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(out) + b"\n"))
    cases["100 MB of documents (zstd)"] = docs
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/tmp/curate-hostile")
    parser.add_argument("--code", default=str(Path(__file__).resolve().parent.parent), help="the checkout to measure")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--only", default="", help="run the cases whose name holds this")
    args = parser.parse_args()
    cases = make_cases(Path(args.root))
    for name, path in cases.items():
        if args.only not in name:
            continue
        out = Path(args.root) / f"out-{path.stem}"
        subprocess.run(["rm", "-rf", str(out)])
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-c", RUN_ONE, args.code, str(path), str(out)],
                                  capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{name:32s} not done after {args.timeout:.0f} s (killed)")
            continue
        if done.returncode:
            last = done.stderr.strip().splitlines()[-1]
            print(f"{name:32s} failed after {time.perf_counter() - started:.1f} s: {last}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        mb = path.stat().st_size / 1e6
        inside = zstandard.frame_content_size(path.read_bytes()[:18]) if path.suffix == ".zst" else 0
        extra = (f", {result['counts']['in']} records, {inside / 1e6 / result['seconds']:.0f} MB/s of JSONL"
                 if "documents" in name else f", {result['counts']}")
        print(f"{name:32s} {result['seconds']:7.2f} s, peak RSS {result['peak_rss_mb']} MB ({mb:.2f} MB on disk){extra}"
              + (f"\n{'':32s} {result['first_error'][:150]}" if result["first_error"] else ""))


if __name__ == "__main__":
    main()
