"""A Dask worker preload (`preload=["flows.warm"]`, or `dask worker --preload flows.warm`): while the worker
waits for its first task, a thread imports what the stages use, Great Expectations' context above all
(seconds), so the first collect, preprocess and gate tasks do not pay for it one after another."""

import threading


def warm() -> None:
    import tasks.stages  # noqa: F401  the stages and every modality
    from tasks import gates

    gates._context()


def dask_setup(worker) -> None:
    threading.Thread(target=warm, name="curate-warm-up", daemon=True).start()
