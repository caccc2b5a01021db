"""Skip the interpreter's teardown once every atexit handler has run.

Its handler runs last when this module is imported before any other registers one (atexit runs them in
reverse order), so logs, Prefect's event and log workers and multiprocessing have all finished by then.
What it skips is freeing, one by one, every object of a process that imported Great Expectations, Prefect
and the stages: 0.8-1.5 s in which the process still holds its stdout, so `curate run | tee` and a caller
capturing its output wait for nothing.
"""

import atexit
import os
import sys

code: int | None = None  # the exit code, once the process knows how it ends; None: the usual teardown


@atexit.register
def _skip_teardown() -> None:
    if code is not None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
