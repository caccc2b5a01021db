"""The local cluster's workers start warm: forked from one process that imported the stages and loaded the
compiled MinHash kernel once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = """
import json, os, sys
from flows.warm import start_forkserver

def facts():
    from tasks.text import minhash
    return {"imported": all(m in sys.modules for m in ("great_expectations", "tasks.stages", "pyarrow")),
            "compiled": bool(minhash._scan.signatures and minhash._band_keys.signatures),
            "blas_threads": os.environ.get("OMP_NUM_THREADS"), "parent": os.getppid()}

if __name__ == "__main__":
    start_forkserver()
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            workers = list(client.run(facts).values())
    print(json.dumps({"workers": workers, "pid": os.getpid()}))
"""


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
