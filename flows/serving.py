"""`curate serve`: a deployment whose runs start warm, from this process.

Prefect's own `flow.serve` polls for due runs every 10 s and starts each in a new Python process that
imports Prefect, Great Expectations and the stages again, and the run starts its own Dask cluster: seconds
before the first shard is touched. A recurring ingest of a few files pays that every time. Here:
- the run's local Dask cluster starts once and serves every run (its workers keep their imports and
  GX context); a config that names a scheduler uses that one instead;
- each flow run forks from a forkserver that imported the flow once, so it starts in milliseconds and is
  still a process of its own: a cancel from the UI kills it, and a run whose process dies is Crashed;
- due runs (scheduled, or triggered from the UI) are picked up within `poll` seconds.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from datetime import datetime, timezone
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import Abort
from prefect.states import Cancelled, Crashed, Pending, StateType
from prefect.utilities.engine import propose_state_sync

from flows.config import PipelineConfig
from flows.runtime import started_cluster, use_security
from flows.warm import start_forkserver

STOP_GRACE_S = 10  # a cancelled run's process gets this long after SIGTERM before SIGKILL


def execute(flow_run_id: UUID, scheduler: str | None, security) -> None:
    """One flow run, in a process forked for it (as `python -m prefect.engine` runs it), on the served cluster
    (the forkserver started before it and lacks its address). Without flow heartbeats: `Server.watch`
    marks a run whose process died Crashed, and the heartbeat thread's 1 s sleep would be waited out at
    the end of every run."""
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import load_flow_run, run_flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.curate import curate

    if scheduler:
        os.environ["DASK_SCHEDULER_ADDRESS"] = scheduler
    use_security(security)
    with handle_engine_signals(flow_run_id), temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        run_flow(curate, flow_run=load_flow_run(flow_run_id))


class Server:
    """The serving loop: claims due runs of one deployment, forks them, watches for cancels and crashes."""

    def __init__(self, deployment_id: UUID, poll: float):
        self.deployment_id, self.poll = deployment_id, poll
        self.security = None  # the served local cluster's certificates, handed to each run's process
        self.running: dict[UUID, multiprocessing.Process] = {}
        self.context = multiprocessing.get_context("forkserver")

    def start_due(self, client) -> None:
        due = client.get_scheduled_flow_runs_for_deployments([self.deployment_id],
                                                              scheduled_before=datetime.now(timezone.utc))
        for run in due:
            if run.id in self.running:
                continue
            try:  # the claim: another server of the same deployment may have taken it
                claimed = propose_state_sync(client, Pending(), flow_run_id=run.id).is_pending()
            except Abort:
                claimed = False
            if claimed:
                process = self.context.Process(target=execute, args=(run.id, os.environ.get("DASK_SCHEDULER_ADDRESS"),
                                                                           self.security),
                                               name=f"flow run {run.name}")
                process.start()
                self.running[run.id] = process

    def watch(self, client) -> None:
        """Kill the processes of runs cancelled in the UI; mark runs whose process died Crashed."""
        if not self.running:
            return
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(self.running))))
        for run in runs:
            process = self.running[run.id]
            if run.state and run.state.type == StateType.CANCELLING:
                stop(process)
                client.set_flow_run_state(run.id, Cancelled(message="cancelled while running"), force=True)
            elif not process.is_alive():
                process.join()
                if not (run.state and run.state.is_final()):
                    client.set_flow_run_state(run.id, Crashed(
                        message=f"the run's process exited with code {process.exitcode} before the run ended"),
                        force=True)
            else:
                continue
            del self.running[run.id]

    def loop(self) -> None:
        with get_client(sync_client=True) as client:
            while True:
                self.start_due(client)
                self.watch(client)
                time.sleep(self.poll)

    def shut_down(self) -> None:
        """Stop the runs still going (their engine marks them as ended) and pause the deployment's schedule, as
        `flow.serve` does: nobody serves it now."""
        for process in self.running.values():
            stop(process)
        with get_client(sync_client=True) as client:
            self.watch(client)
            client.pause_deployment(self.deployment_id)


def stop(process: multiprocessing.Process) -> None:
    process.terminate()
    process.join(STOP_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join()


def serve(config: PipelineConfig, name: str, cron: str | None, description: str, poll: float = 0.2) -> None:
    """Register the deployment `curate/<name>` and serve its runs until interrupted."""
    from flows.curate import curate

    deployment = curate.to_deployment(name=name, cron=cron, parameters={"config": config.model_dump(mode="json")},
                                      description=description)
    server = Server(deployment.apply(), poll)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop by SIGTERM shuts down as Ctrl-C does
    start_forkserver(["flows.curate"])
    with started_cluster(config) as server.security:
        try:
            server.loop()
        finally:
            server.shut_down()
