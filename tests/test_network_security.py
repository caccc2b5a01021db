"""Who can reach what: `curate server --auth` asks for its password and a CSRF token, a local Dask cluster
speaks only TLS with its own certificates, and a deployed run refuses what its form may not ask for."""

from __future__ import annotations

import os
import subprocess
import sys

import dask
import httpx
import pytest

from conftest import CURATE, ROOT, free_port, wait_for
from flows.config import PipelineConfig


def test_curate_server_with_auth_wants_its_password_a_csrf_token_and_its_own_origin(tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "",
           "PREFECT_SERVER_API_AUTH_STRING": "admin:s3cret-pass"}
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen([*CURATE, "server", "--port", str(port), "--auth"], env=env, cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200, 120, "Prefect server")
        login = {"Authorization": "Basic " + __import__("base64").b64encode(b"admin:s3cret-pass").decode()}
        assert httpx.get(f"{api}/csrf-token", params={"client": "t"}).status_code == 401  # no password
        assert httpx.post(f"{api}/flows/filter", json={}, headers=login).status_code == 403  # no CSRF token
        token = httpx.get(f"{api}/csrf-token", params={"client": "t"}, headers=login).json()["token"]
        csrf = {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": "t"}
        assert httpx.post(f"{api}/flows/filter", json={}, headers=login | csrf).status_code == 200
        for origin, allowed in ((f"http://127.0.0.1:{port}", True), ("http://evil.example", False)):
            preflight = httpx.options(f"{api}/flows/filter", headers={"Origin": origin,
                                                                      "Access-Control-Request-Method": "POST"})
            assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "export PREFECT_API_AUTH_STRING='admin:s3cret-pass'" in (tmp_path / "server.log").read_text()


@pytest.mark.own_services
def test_a_local_cluster_speaks_tls_and_refuses_a_client_without_its_certificates():
    from distributed import Client

    from flows.runtime import started_cluster

    config = PipelineConfig.model_validate({"sources": [{"uri": "x.jsonl"}], "output": "out",
                                            "dask": {"n_workers": 1}})
    os.environ.pop("DASK_SCHEDULER_ADDRESS", None)
    with started_cluster(config) as security:
        address = os.environ["DASK_SCHEDULER_ADDRESS"]
        outsider = subprocess.run(  # a process without the certificates, as another user of the machine would be
            [sys.executable, "-c", f"from distributed import Client; Client({address!r}, timeout=5)"],
            capture_output=True, text=True, timeout=60)
        assert address.startswith("tls://127.0.0.1:") and security.require_encryption
        with Client(address, timeout=20) as client:  # this process's clients have the certificates
            assert client.submit(lambda: 41 + 1).result() == 42
    assert dask.config.get("distributed.comm.require-encryption") is not True  # given back with the cluster
    assert outsider.returncode != 0 and "TLS" in outsider.stderr, outsider.stderr[-2000:]


def test_a_deployed_run_refuses_variables_and_schedulers_its_worker_does_not_allow():
    from flows.preflight import deployed_run_problems

    config = PipelineConfig.model_validate({
        "sources": [{"uri": "s3://b/raw/*.jsonl", "storage_options": {"key": {"env": "CURATE_S3_KEY"},
                                                                      "secret": {"env": "PREFECT_API_AUTH_STRING"}}}],
        "output": "s3://b/out", "storage_options": {"token": {"secret": "a-block"}},
        "dask": {"address": "tcp://127.0.0.9:8786"}})
    assert deployed_run_problems(config, {}) == [
        "sources[0].storage_options.secret names the environment variable PREFECT_API_AUTH_STRING; a deployed run "
        "reads only variables named CURATE_* (CURATE_DEPLOYED_ENV_PREFIXES on the worker)",
        "dask.address tcp://127.0.0.9:8786 is not a scheduler this deployment runs on: leave it out (the worker's "
        "DASK_SCHEDULER_ADDRESS is used) or list it in CURATE_DEPLOYED_DASK_ADDRESSES on the worker"]
    assert deployed_run_problems(config, {"CURATE_DEPLOYED_ENV_PREFIXES": "CURATE_,PREFECT_API_",
                                          "CURATE_DEPLOYED_DASK_ADDRESSES": "tcp://127.0.0.9:8786"}) == []
