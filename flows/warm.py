"""Warm Dask workers: what the stages use is imported before the first task, not by it.

- A run's local cluster forks its workers from a forkserver that loaded `flows.worker_preload`
  (`start_forkserver`, through `flows.forkserver`): the imports (Great Expectations, Prefect, pyarrow,
  the stages) and compiled kernels, seconds of CPU, load once for all workers rather than once in each,
  which on a small machine is most of a run's fixed cost.
- A long-lived worker (`dask worker --preload flows.warm`, or `preload=["flows.warm"]`) loads them in a
  thread while it waits for its first task, and makes its Great Expectations context there.
"""

import os
import threading
from typing import Sequence

PRELOAD = ["distributed", "flows.forkserver"]


def warm() -> None:
    import flows.worker_preload  # noqa: F401
    from tasks.gates import gx

    gx.shared_context()


def dask_setup(worker) -> None:
    threading.Thread(target=warm, name="curate-warm-up", daemon=True).start()


def start_forkserver(also: Sequence[str] = ()) -> None:
    """Make the local cluster's workers fork from a forkserver that imports `PRELOAD` (and `also`) as it starts.

    The forkserver takes this process's environment as it starts, and forked workers do not get the
    variables Dask's nanny sets before a spawn (one BLAS thread per worker and the like): they are set
    here first. The first call starts it (later ones change nothing); it lives as long as this process.
    """
    import multiprocessing
    import multiprocessing.forkserver

    import dask
    import distributed.config  # noqa: F401  Dask's defaults for its workers, the nanny's environment among them

    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    multiprocessing.get_context("forkserver").set_forkserver_preload([*PRELOAD, *also])
    for name, value in dask.config.get("distributed.nanny.pre-spawn-environ").items():
        os.environ.setdefault(name, str(value))  # as the nanny sets them in its own process before a spawn
    multiprocessing.forkserver.ensure_running()
