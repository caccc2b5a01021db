"""Progress of a stage's mapped tasks while they run: shards done of total and records so far, as a log line
every few seconds (the terminal and the run's logs in the UI) and a progress artifact in the UI. A stage that
ends before the first line is due says nothing, so small runs stay quiet."""

from __future__ import annotations

import re
import time
from typing import Callable, Sequence

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, wait

EVERY_S = 5.0


def results(futures: Sequence[PrefectFuture], stage: str, unit: str = "shards",
            records: Callable[[object], int] | None = None, every: float = EVERY_S) -> list:
    """The futures' results in order, reporting progress every `every` seconds until all are done.
    `records(result)` counts what one finished task handled (None: no record count)."""
    futures = list(futures)
    started, ticks, artifact, finished = time.monotonic(), 0, None, {}
    while True:
        pending = [f for i, f in enumerate(futures) if i not in finished]
        done = wait(pending, timeout=max(0.0, started + every * (ticks + 1) - time.monotonic())).done
        finished.update({i: f.result() for i, f in enumerate(futures) if i not in finished and f in done})
        if len(finished) == len(futures):
            break
        ticks += 1
        artifact = report(stage, unit, len(finished), len(futures), finished.values(), records,
                          time.monotonic() - started, artifact)
    if artifact is not None:
        report(stage, unit, len(futures), len(futures), finished.values(), records, time.monotonic() - started,
               artifact)
    return [finished[i] for i in range(len(futures))]


def report(stage: str, unit: str, done: int, total: int, finished, records, seconds: float, artifact) -> object:
    """Log one progress line and create or update the stage's progress artifact; returns the artifact's id."""
    counted = f", {sum(records(r) for r in finished):,} records" if records else ""
    line = f"{stage}: {done}/{total} {unit} done{counted} ({seconds:.0f} s)"
    get_run_logger().info(line)
    percent = 100.0 * done / max(1, total)
    if artifact is None:
        key = "progress-" + re.sub(r"[^a-z0-9]+", "-", stage.lower()).strip("-")
        return create_progress_artifact(percent, key=key, description=line)
    update_progress_artifact(artifact, percent, description=line)
    return artifact


class Laps:
    """Wall seconds of each stage of a run, in order: `lap(name)` closes the stage that ran since the last."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.mark = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self.mark, 3)
        self.mark = now

    def timed(self, run, prefix: str):
        """An executor of steps (tasks.dedup.steps.Executor) whose every step closes a lap `<prefix><step>`."""
        def timed_run(step, items: list, **constants) -> list:
            results = run(step, items, **constants)
            self.lap(prefix + step.__name__.replace("_", " "))
            return results
        return timed_run
