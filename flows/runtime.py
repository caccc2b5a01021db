"""Where a run executes: its Dask cluster (from the run's own config) and the Prefect API its workers
report to. Plumbing only; the pipeline itself is in `flows.curate`."""

import ctypes
import functools
import os
import signal
import subprocess
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Mapping

from prefect.context import FlowRunContext
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.server.api import server as prefect_server_module
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_dask import DaskTaskRunner

from flows.config import DaskSettings, PipelineConfig


def cluster_for(dask: DaskSettings, environ: Mapping[str, str]) -> dict:
    """Where a run's tasks go: the config's scheduler, else DASK_SCHEDULER_ADDRESS (docker-compose.yml sets
    it for deployed runs), else a local cluster of the config's size. DaskTaskRunner's arguments."""
    address = dask.address or environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address:
        return {"address": address}
    return {"cluster_kwargs": {"n_workers": dask.n_workers, "threads_per_worker": dask.threads_per_worker,
                               "processes": True, "memory_limit": dask.memory_limit, "dashboard_address": None}}


def run_config() -> PipelineConfig:
    """The running flow's `config` parameter as the model, however the run was handed it."""
    config = FlowRunContext.get().parameters["config"]
    return config if isinstance(config, PipelineConfig) else PipelineConfig.model_validate(config)


class ConfiguredDaskTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner that takes its cluster from the run's own `config` parameter when the first task is
    submitted, so runs started from a deployment or the UI form honour its `dask` settings, and a run that
    submits no task (nothing new) starts no cluster."""

    def __init__(self, **kwargs):
        super().__init__(**{"cluster_class": "distributed.LocalCluster", **kwargs})

    @property
    def client(self):
        if not self._client:
            for name, value in cluster_for(run_config().dask, os.environ).items():
                setattr(self, name, value)
        return super().client


def die_with_parent() -> None:
    """In a child process before exec: the kernel sends it SIGTERM when its parent dies, even by SIGKILL."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


class OrphanFreeServer(SubprocessASGIServer):
    """The temporary Prefect server, which ends with `curate run` however it ends: killed with -9, the
    server would otherwise live on, re-parented, holding 200 MB and its port."""

    def _run_uvicorn_command(self):
        popen = prefect_server_module.subprocess.Popen
        prefect_server_module.subprocess = SimpleNamespace(
            **{**vars(subprocess), "Popen": functools.partial(popen, preexec_fn=die_with_parent)})
        try:
            return super()._run_uvicorn_command()
        finally:
            prefect_server_module.subprocess = subprocess


@contextmanager
def prefect_api():
    """Make sure the flow and its Dask workers talk to one Prefect API.

    Without PREFECT_API_URL, Prefect starts a temporary server per process, so every worker would start
    its own (seconds each, and its task runs invisible to the flow's). Start one here and hand its URL to
    the workers through the environment they inherit.
    """
    if PREFECT_API_URL.value():
        yield
        return
    server = OrphanFreeServer()
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        # Flush logs and events while the server still listens; otherwise they retry against it at exit.
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def mark_crashed(record: dict) -> None:
    """Show a killed run as Crashed in the UI: its flow run, if this API knows it and it still shows as
    running (a killed process cannot say so itself)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    if not record.get("flow_run_id"):
        return
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(record["flow_run_id"])
        except ObjectNotFound:  # recorded by another Prefect server
            return
        if run.state is None or not run.state.is_final():
            client.set_flow_run_state(run.id, Crashed(message=f"process {record['pid']} on {record['host']} was "
                                                              "killed before the run ended"), force=True)
