"""A long stage reports its progress while it runs, in the run's logs and as a progress artifact in the UI;
a short one says nothing."""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.artifacts import Artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows import progress
from flows.runtime import prefect_api


@task
def slow_shard(rows: int, seconds: float) -> int:
    time.sleep(seconds)
    return rows


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def stage(seconds: float, every: float) -> list[int]:
    futures = slow_shard.map([10, 20, 30, 40], seconds)
    return progress.results(futures, f"shards {seconds}", records=lambda rows: rows, every=every)


def test_progress_lines_and_artifact_of_a_long_stage(caplog):
    with prefect_api(), caplog.at_level("INFO", logger="prefect.flow_runs"):
        assert stage(0.4, 0.25) == [10, 20, 30, 40]  # in order, whatever order they finished in
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shards 0.4:")]
        assert lines[-1].startswith("shards 0.4: 4/4 shards done, 100 records (")
        assert len(lines) >= 2 and all(" shards done, " in line for line in lines)
        artifact = Artifact.get("progress-shards-0-4")
        assert (artifact.type, artifact.data, artifact.description) == ("progress", 100.0, lines[-1])

        caplog.clear()
        assert stage(0.0, 30) == [10, 20, 30, 40]
        assert not [r for r in caplog.records if r.getMessage().startswith("shards 0.0:")]
        assert Artifact.get("progress-shards-0-0") is None
