"""What a small run costs beyond its work: `curate run` of `--docs` documents, `--runs` times, each into a fresh
output, timed from the command's start to its exit, with nothing else running.

    .venv/bin/python bench/fixed_cost.py [--docs 20] [--runs 5] [-- extra curate run arguments]

Each run is the whole product: its Prefect API, its local Dask cluster, the four Great Expectations gates,
export. PREFECT_HOME is a fresh folder for the bench, so the first run finds nothing of an earlier one: it
starts the run daemon (flows.daemon), which the later runs reuse and the bench stops at its end; pass
`-- --no-daemon` for runs that each start their own server and cluster.
The warm path, runs triggered through `curate serve`, is `bench/warm_run.py`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale_corpus import write_corpus  # noqa: E402

CURATE = str(ROOT / ".venv" / "bin" / "curate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("extra", nargs="*", help="more `curate run` arguments, after --")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="curate-fixed-"))
    write_corpus(work / "corpus", args.docs, files=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "DASK_SCHEDULER"))}
    env["PREFECT_HOME"] = str(work / "home")
    seconds = []
    try:
        for i in range(args.runs):
            config = work / f"run-{i}.yaml"
            config.write_text(yaml.safe_dump({"sources": [{"uri": str(work / "corpus" / "docs" / "*.jsonl"),
                                                           "id_field": "id"}],
                                              "output": str(work / f"out-{i}"), "export": {"name": "fixed"}}))
            started = time.perf_counter()
            done = subprocess.run([CURATE, "run", str(config), *args.extra], env=env, capture_output=True, text=True)
            seconds.append(time.perf_counter() - started)
            if done.returncode:
                sys.exit(f"run {i + 1} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            print(f"run {i + 1}: {seconds[-1]:.2f} s", flush=True)
        print(f"median of {args.runs}: {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, "
              f"max {max(seconds):.2f})")
    finally:
        subprocess.run([CURATE, "daemon", "stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
