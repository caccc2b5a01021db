"""The local cluster's workers start warm: forked from one process that imported the stages and loaded the
compiled text kernels once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = """
import json, os, sys
from flows.warm import start_forkserver

def facts():
    from tasks.text import minhash
    from tasks.text.preprocess import gopher_quality, gopher_repetition, words
    kernels = (minhash._scan, minhash._band_keys, gopher_quality._word_signals, gopher_repetition._ngram_chars,
               gopher_repetition._duplicate_elements, words._word_counts)
    return {"imported": all(m in sys.modules for m in ("great_expectations", "tasks.stages", "pyarrow")),
            "compiled": all(kernel.signatures for kernel in kernels),
            "blas_threads": os.environ.get("OMP_NUM_THREADS"), "parent": os.getppid()}

if __name__ == "__main__":
    start_forkserver()
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            workers = list(client.run(facts).values())
    print(json.dumps({"workers": workers, "pid": os.getpid()}))
"""


@pytest.mark.own_services
def test_local_workers_fork_warm_from_one_server_with_dasks_worker_environment():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    (forkserver,) = {w["parent"] for w in seen["workers"]}  # both forked from the same process...
    assert forkserver != seen["pid"]  # ...which is not the run's own
    assert [{k: w[k] for k in ("imported", "compiled", "blas_threads")} for w in seen["workers"]] == [
        {"imported": True, "compiled": True, "blas_threads": "1"}] * 2  # warm before any task, one BLAS thread
    # per worker as Dask's nanny sets


QUICK = """
import atexit, sys
from flows import quick_exit

class Teardown:
    def __del__(self):
        print("torn down", flush=True)

kept = Teardown()  # freed by the interpreter's teardown, which quick_exit skips
atexit.register(print, "later handler ran")  # registered after quick_exit's, so it runs before it
print("buffered output", end="")
quick_exit.code = int(sys.argv[1])
"""


def test_quick_exit_keeps_the_code_the_handlers_and_the_output_but_not_the_teardown():
    done = subprocess.run([sys.executable, "-c", QUICK, "3"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout) == (3, "buffered outputlater handler ran\n")
