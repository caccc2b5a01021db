"""Where a run executes: its Dask cluster (from the run's own config) and the Prefect API its workers
report to. Plumbing only; the pipeline itself is in `flows.curate`."""

import os
from contextlib import contextmanager
from typing import Mapping

from prefect.context import FlowRunContext
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect_dask import DaskTaskRunner

from flows.config import DaskSettings, PipelineConfig
from flows.server import TemporaryServer, startup_timeout


def cluster_for(dask: DaskSettings, environ: Mapping[str, str]) -> dict:
    """DaskTaskRunner's arguments for where a run's tasks go (DaskSettings.scheduler)."""
    address = dask.scheduler(environ)
    if address:
        return {"address": address}
    return {"cluster_kwargs": {"n_workers": dask.n_workers, "threads_per_worker": dask.threads_per_worker,
                               "processes": True, "memory_limit": dask.memory_limit, "dashboard_address": None,
                               "preload": ["flows.warm"], "security": True}}


@contextmanager
def started_cluster(config: PipelineConfig, warm=None):
    """The run's local Dask cluster, started now (while the Prefect server boots) rather than at the flow's
    first task, and handed to the flow's task runner through DASK_SCHEDULER_ADDRESS; nothing to start when
    the run uses an existing scheduler. Yields the cluster's `Security` (None for an existing scheduler).

    A local cluster speaks TLS with certificates made for it (`security=True`): a Dask scheduler runs any code
    it is sent, and on a shared machine anyone could reach a loopback port. This process's clients get the
    certificates through Dask's config (`use_security`).

    `warm` (flows.daemon.WarmServices): a cluster already running, used when it is the one the config asks for."""
    where = cluster_for(config.dask, os.environ)
    if "address" in where:
        yield None
        return
    if warm and where["cluster_kwargs"] == warm.cluster_kwargs:
        with use_security(warm.security), scheduler_in_environment(warm.scheduler):
            yield warm.security
        return
    from distributed import LocalCluster
    from distributed.security import Security

    from flows.warm import start_forkserver

    start_forkserver()
    security = Security.temporary()
    with LocalCluster(**where["cluster_kwargs"] | {"security": security}) as cluster, use_security(security), \
            scheduler_in_environment(cluster.scheduler_address):
        yield security


@contextmanager
def scheduler_in_environment(address: str):
    """The flow's task runner (`cluster_for`) takes the cluster at `address` for the block."""
    os.environ["DASK_SCHEDULER_ADDRESS"] = address
    try:
        yield
    finally:
        os.environ.pop("DASK_SCHEDULER_ADDRESS", None)


def use_security(security):
    """Dask clients made in this process (the task runner's) present `security`'s certificates: for good, or
    until the `with` block it is used as ends. None changes nothing."""
    import dask

    if security is None:
        return dask.config.set({})
    return dask.config.set({"distributed.comm.tls.ca-file": security.tls_ca_file,
                            "distributed.comm.tls.client.cert": security.tls_client_cert,
                            "distributed.comm.tls.client.key": security.tls_client_key,
                            "distributed.comm.require-encryption": True})


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


def cluster_slots() -> int:
    """Worker threads of the run's Dask cluster (starting it): how many shards can run at once."""
    from prefect.context import get_run_context
    workers = get_run_context().task_runner.client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(w["nthreads"] for w in workers)


@contextmanager
def prefect_api(server: TemporaryServer | None = None):
    """Make sure the flow and its Dask workers talk to one Prefect API.

    Without PREFECT_API_URL, Prefect starts a temporary server per process, so every worker would start
    its own (seconds each, and its task runs invisible to the flow's). Start one here, or take `server`,
    started earlier, and hand its URL to the workers through the environment they inherit (set before
    the server is up, so workers started meanwhile have it too). Workers flush logs and events to it as
    they exit: a cluster started outside must end before its server does. A temporary server ends with
    the run, so the flow sends it no heartbeats (they detect crashed runs later, on a server that
    outlives them); their thread sleeps in 1 s steps, which the run would otherwise wait out at its end.
    """
    if PREFECT_API_URL.value() and not server:
        yield
        return
    own = server is None  # a server handed in is stopped by its owner, after the cluster its workers report from
    server = server or TemporaryServer()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        server.ready(startup_timeout())
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        # Flush logs and events while the server still listens; otherwise they retry against it at exit.
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
        os.environ.pop("PREFECT_API_URL", None)
        if own:
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
