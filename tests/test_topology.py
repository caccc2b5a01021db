"""docker-compose.yml's topology without containers: a Prefect server, a `dask scheduler` and two
`dask worker` processes, and an S3 API (moto on loopback), each its own process started here, with the
environment the compose file gives them. The flow runs as a deployed run does, from its decorator, with
the scheduler named by DASK_SCHEDULER_ADDRESS and the endpoint by FSSPEC_S3_ENDPOINT_URL; its config is
the one deployments/prefect.yaml registers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import E2E, ROOT, free_port, wait_for
from test_flow import EXPECTED_STAGES

RUN_AS_DEPLOYED = """
import json, sys
from flows.config import PipelineConfig
from flows.curate import curate
print(json.dumps(curate(config=PipelineConfig.model_validate_json(sys.stdin.read()))))
"""


@pytest.fixture
def dask_cluster(tmp_path, prefect_server, s3_endpoint):
    """A scheduler and two single-threaded workers, as separate processes, with the compose file's
    environment; yields (scheduler address, that environment, a client of the cluster)."""
    url, home, _ = prefect_server
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"{url}/api",
           "FSSPEC_S3_ENDPOINT_URL": s3_endpoint, "AWS_ENDPOINT_URL_S3": s3_endpoint}
    address = f"tcp://127.0.0.1:{free_port()}"
    dask = str(Path(sys.executable).parent / "dask")
    commands = [[dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                 "--no-dashboard"]] + [
        [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--memory-limit", "2GiB",
         "--no-dashboard", "--name", f"worker-{i}"] for i in range(2)]
    processes = []
    for i, command in enumerate(commands):
        with open(tmp_path / f"dask-{i}.log", "w") as log:
            processes.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            yield address, env, client
    finally:
        for p in reversed(processes):
            p.terminate()
        for p in processes:
            p.wait(timeout=30)


@pytest.mark.own_services
def test_deployed_flow_on_separate_scheduler_workers_and_s3(tmp_path, dask_cluster, s3, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    address, env, client = dask_cluster
    fs, _ = s3
    for f in E2E.glob("*.jsonl*"):
        fs.put(str(f), f"curate/raw/2026-11-22/{f.name}")
    config = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["definitions"]["config"]
    result = subprocess.run([sys.executable, "-c", RUN_AS_DEPLOYED], input=json.dumps(config), cwd=tmp_path,
                            env={**env, "DASK_SCHEDULER_ADDRESS": address}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["stages"] == EXPECTED_STAGES
    assert summary["published"].startswith("s3://curate/datasets/web-en/versions/v")
    version = fs.cat("curate/datasets/web-en/LATEST").decode().strip()
    manifest = json.loads(fs.cat(f"curate/datasets/web-en/versions/{version}/manifest.json"))
    assert manifest["documents"] == 28 and "report.html" in [
        p.rsplit("/", 1)[1] for p in fs.ls(f"curate/datasets/web-en/versions/{version}")]
    assert len(fs.ls("curate/datasets/web-en/ledger")) == 1
    executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed  # both workers did work

    async def runs():
        async with get_client() as prefect:
            [flow_run] = [r for r in await prefect.read_flow_runs() if summary["run_id"].endswith(str(r.id)[:8])]
            return flow_run, await prefect.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))

    with temporary_settings(updates={PREFECT_API_URL: f"{prefect_server[0]}/api"}):
        flow_run, task_runs = wait_for(lambda: asyncio.run(runs()), 30, "the flow run's task runs")
    assert flow_run.name.startswith("web-en: incremental ingest, ") and flow_run.state.is_completed()
    names = {t.name for t in task_runs}
    assert {"collect unit 0 (4 files)", "preprocess part-00000-0000.parquet", "dedup, every step in one task",
            "export every split"} <= names, names
    assert not [n for n in names if n.startswith("gate ")]  # the stage tasks validated what they wrote
    assert {t.state.type.value for t in task_runs} == {"COMPLETED"}
