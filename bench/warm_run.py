"""A recurring ingest as it runs in production: `curate server`, `curate serve` holding its warm Dask cluster,
and runs triggered through the API, as the UI's Run button does. What does a small run cost beyond its work?

    .venv/bin/python bench/warm_run.py [--docs 20] [--runs 5]

Each triggered run is a full run of `--docs` documents of real text (bench/scale_corpus.py) into a fresh
version. From the API's own record of the flow run and its task runs it prints: the wall time from the
run's scheduled time to Completed, the time until it started, the time some task of it was running
(the union of its task runs' intervals: the work, with the tasks' own engine overhead), and the rest:
the orchestration overhead, when no task of the run was doing anything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale_corpus import write_corpus  # noqa: E402

CURATE = str(ROOT / ".venv" / "bin" / "curate")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{what} not ready after {seconds} s")


def covered(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


async def triggered_run(deployment: str, index: int) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        found = await client.read_deployment_by_name(deployment)
        config = found.parameters["config"]
        config["export"] = {**config["export"], "version": f"warm-{index}"}
        run = await client.create_flow_run_from_deployment(found.id, parameters={"config": config})
        while True:
            run = await client.read_flow_run(run.id)
            if run.state.is_final():
                break
            await asyncio.sleep(0.05)
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    scheduled = run.expected_start_time.timestamp()
    work = covered([(t.start_time.timestamp(), t.end_time.timestamp()) for t in tasks if t.start_time and t.end_time])
    return {"state": run.state.name, "wall": run.end_time.timestamp() - scheduled,
            "pickup": run.start_time.timestamp() - scheduled, "work": work, "tasks": len(tasks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="curate-warm-"))
    write_corpus(work / "corpus", args.docs, files=1)
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(work / "home"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    config = work / "warm.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"uri": str(work / "corpus" / "docs" / "*.jsonl"), "id_field": "id"}],
                                      "output": str(work / "out"), "export": {"name": "warm"}}))
    logs = [open(work / name, "w") for name in ("server.log", "serve.log")]
    server = subprocess.Popen([CURATE, "server", "--port", str(port)], env={**env, "PREFECT_API_URL": ""},
                              stdout=logs[0], stderr=subprocess.STDOUT)
    serve = None
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200, 120, "server")
        serve = subprocess.Popen([CURATE, "serve", str(config), "--name", "warm"], env=env, stdout=logs[1],
                                 stderr=subprocess.STDOUT)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/api/deployments/name/curate/warm").status_code == 200,
                 120, "deployment")
        os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
        for i in range(args.runs):
            r = asyncio.run(triggered_run("curate/warm", i))
            print(f"run {i + 1}: {r['state']}, scheduled to end {r['wall']:.2f} s: picked up after {r['pickup']:.2f} s, "
                  f"a task running {r['work']:.2f} s ({r['tasks']} task runs), no task running "
                  f"{r['wall'] - r['work']:.2f} s", flush=True)
    finally:
        for p in (serve, server):
            if p:
                p.terminate()
                p.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
