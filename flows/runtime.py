"""Where a run executes: its Dask cluster (from the run's own config) and the Prefect API its workers
report to. Plumbing only; the pipeline itself is in `flows.curate`."""

import os
from contextlib import contextmanager
from typing import Mapping

from prefect.context import FlowRunContext
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
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
    server = SubprocessASGIServer()
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
