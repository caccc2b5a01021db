"""Shared fixtures: an isolated Prefect home, a real S3 API (moto server on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
E2E = DATA / "e2e"  # the end-to-end corpus: 131 lines in 4 JSONL files, planted duplicates, broken input
CURATE = [sys.executable, "-m", "flows.cli"]

_home = tempfile.mkdtemp(prefix="curate-prefect-")
os.environ.update({
    "PREFECT_HOME": _home,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
})
os.environ.pop("PREFECT_API_URL", None)

# An English paragraph in no test corpus: a document every quality filter keeps and nothing duplicates.
FRESH = ("The river had been rising for three days when the ferry finally stopped running. Farmers on the east "
         "bank moved their animals to the high pasture, and the school closed early so that the older children "
         "could help. Nobody in the village remembered a flood this late in the spring. By the fourth morning the "
         "water had reached the steps of the old mill, and the miller sat on the roof with a flask of tea, "
         "watching the current carry fence posts and branches past his door. Then the rain stopped.")


# The Prefect server and the warm Dask cluster every run of the session shares (`run_services`), as a user's
# `curate server` and a deployed cluster are shared: the variables that name them, for runs in this process
# and in the processes the tests start.
SERVICES = ("PREFECT_API_URL", "DASK_SCHEDULER_ADDRESS", "DASK_DISTRIBUTED__COMM__TLS__CA_FILE",
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY",
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION")
NO_TLS = {"distributed.comm.tls.ca-file": None, "distributed.comm.tls.client.cert": None,
          "distributed.comm.tls.client.key": None, "distributed.comm.require-encryption": False}

SHARED_DATA = ROOT.parent / "shared" / "data"  # the real text, pictures and clips beside the checkout


def pytest_sessionstart(session):
    """The media and classifier tests skip without ../shared/data on a developer's machine; CI always has it,
    so there a missing folder ends the run instead of letting it pass with those tests skipped."""
    if os.environ.get("CI") and not SHARED_DATA.is_dir():
        pytest.exit(f"CI without {SHARED_DATA}: the tests that read it would be skipped and prove nothing",
                    returncode=3)


def pytest_configure(config):
    config.addinivalue_line("markers", "own_services: the test starts its own Prefect server and Dask cluster "
                                       "(it kills, signals or sizes them) instead of the session's shared ones")


@pytest.fixture(scope="session", autouse=True)
def run_services(tmp_path_factory):
    """One temporary Prefect server and one warm Dask cluster of a run's default size (`cluster_for`: TLS, workers
    forked from a forkserver that imported the stages) for the whole session, exported through the variables the
    code honours: each run of a test then costs its work, not a server's and a cluster's start (seconds each)."""
    from distributed import LocalCluster
    from distributed.security import Security
    from prefect.context import refresh_global_settings_context

    from flows.config import DaskSettings
    from flows.runtime import cluster_for, use_security
    from flows.server import TemporaryServer
    from flows.warm import start_forkserver

    server = TemporaryServer()
    start_forkserver()
    security = Security.temporary()
    certs = tmp_path_factory.mktemp("dask-tls")
    files = {}
    for name in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        files[name] = certs / f"{name}.pem"
        files[name].write_text(getattr(security, name))
        files[name].chmod(0o600)
    cluster = LocalCluster(**cluster_for(DaskSettings(), {})["cluster_kwargs"] | {"security": security})
    server.ready(180)
    os.environ.update(dict(zip(SERVICES, [server.api_url, cluster.scheduler_address, str(files["tls_ca_file"]),
                                          str(files["tls_client_cert"]), str(files["tls_client_key"]), "True"])))
    refresh_global_settings_context()
    with use_security(security):
        yield server.api_url, cluster.scheduler_address
    cluster.close()
    for name in SERVICES:
        os.environ.pop(name, None)
    refresh_global_settings_context()
    server.stop()


@pytest.fixture(autouse=True)
def own_services(request, monkeypatch):
    """A test marked `own_services` runs as a user without a server or a scheduler would: its runs start their own."""
    if not request.node.get_closest_marker("own_services"):
        yield
        return
    import dask
    from prefect.settings import PREFECT_API_URL, temporary_settings

    for name in SERVICES:
        monkeypatch.delenv(name, raising=False)
    with dask.config.set(NO_TLS), temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


def e2e_config(sources: str, output: str, **extra) -> dict:
    """The pipeline config the end-to-end tests run: small shards, English only, 80/10/10 splits."""
    return {"sources": [{"uri": sources, "id_field": "id"}], "output": output, "collect": {"shard_rows": 40},
            "preprocess": {"language": {"allowed": ["en"]}},
            "export": {"splits": {"train": 0.8, "validation": 0.1, "test": 0.1}}, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception:  # not up yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds} s")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`curate server` on a free loopback port with its own PREFECT_HOME: (url, home, log file)."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": ""}
    log = home / "server.log"
    with open(log, "w") as out:  # a file, not a pipe nobody reads: a full pipe would block the server
        server = subprocess.Popen([*CURATE, "server", "--port", str(port)], env=env, cwd=ROOT,
                                  stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/api/health", timeout=2).status_code == 200, 120, "Prefect server")
        yield url, home, log
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextmanager
def serving(prefect_server, config: dict, folder: Path, name: str, *options: str):
    """`curate serve` of `config` as deployment curate/<name> until the block ends; yields the API URL."""
    url, home, _ = prefect_server
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**{k: v for k, v in os.environ.items() if k not in SERVICES}, "PREFECT_HOME": str(home),
           "PREFECT_API_URL": f"{url}/api"}  # serve holds a cluster of its own
    with open(folder / f"serve-{name}.log", "w") as out:
        serve = subprocess.Popen([*CURATE, "serve", str(path), "--name", name, *options], env=env, cwd=ROOT,
                                 stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: httpx.get(f"{url}/api/deployments/name/curate/{name}", timeout=2).status_code == 200,
                 60, f"deployment curate/{name}")
        yield f"{url}/api"
    finally:
        serve.terminate()
        serve.wait(timeout=30)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback, as s3fs's own tests run it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint):
    """A clean bucket `curate` and the storage options that reach it."""
    import requests
    import s3fs

    requests.post(f"{s3_endpoint}/moto-api/reset")
    s3fs.S3FileSystem.clear_instance_cache()
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3_endpoint}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("curate")
    return fs, options
