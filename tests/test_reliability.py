"""A run that cannot finish stops early and says why, and leaves nothing half-written behind."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from prefect.exceptions import FailedRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from conftest import CURATE, E2E, ROOT, e2e_config, wait_for
from flows.config import PipelineConfig
from flows.curate import run_pipeline


def test_a_run_whose_output_bucket_is_missing_fails_before_any_work_and_creates_no_bucket(s3, tmp_path):
    fs, options = s3
    config = PipelineConfig.model_validate(e2e_config(str(E2E / "*.jsonl*"), "s3://no-such-bucket/out",
                                                      storage_options={"client_kwargs": options["client_kwargs"]}))
    with pytest.raises(FailedRun, match=r"^the run cannot start: output s3://no-such-bucket/out: bucket "
                                        r"'no-such-bucket' does not exist \(curate does not create buckets"):
        run_pipeline(config)
    assert not fs.exists("no-such-bucket")


def session_processes(sid: int) -> list[str]:
    """The command lines of the live processes of session `sid`."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(" ".join(p.info["cmdline"] or []))
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def exported_rows(out: Path, version: str) -> dict[str, list[dict]]:
    return {str(f.relative_to(out)): pq.read_table(f).to_pylist()
            for f in sorted((out / "versions" / version).glob("*/part-*.parquet"))}


SETTINGS = {"collect": {"shard_rows": 10},
            "export": {"version": "v1", "splits": {"train": 0.8, "validation": 0.1, "test": 0.1}},
            "gates": {"raw": "off", "clean": "off", "dedup": "off", "export": "off"}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """What an undisturbed run of the e2e sources with SETTINGS publishes (its stages and exported rows): the
    killed-and-resumed run and the run that lost a worker must both end in it."""
    out = tmp_path_factory.mktemp("reference")
    summary = run_pipeline(PipelineConfig.model_validate(e2e_config(str(E2E / "*.jsonl*"), str(out)) | SETTINGS))
    return summary["stages"], exported_rows(out, "v1")


@pytest.mark.own_services
def test_a_killed_run_leaves_no_process_and_resumes_to_what_an_uninterrupted_run_publishes(reference, tmp_path):
    config = e2e_config(str(E2E / "*.jsonl*"), str(tmp_path / "out")) | SETTINGS
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    home = tmp_path / "home"
    env = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = tmp_path / "out"

    with open(tmp_path / "killed.log", "w") as log:
        killed = subprocess.Popen([*CURATE, "run", str(path), "--no-daemon"], env=env, cwd=tmp_path, stdout=log, stderr=log,
                                  start_new_session=True)
    wait_for(lambda: list(out.glob("runs/*/dedup/_done/sketch-*.json")) or killed.poll() is not None, 300,
             "the run's dedup stage")
    assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    os.kill(killed.pid, signal.SIGKILL)  # kill -9: no handler runs
    killed.wait()
    assert not (out / "versions" / "v1" / "manifest.json").exists(), "the run finished before the kill"
    wait_for(lambda: not session_processes(killed.pid), 30, "the killed run's server and workers to exit")
    (run,) = list(out.glob("runs/*"))
    record = json.loads((run / "_run.json").read_text())
    assert record["status"] == "running" and (out / "claims" / "v1").exists()  # as the kill left them
    finished = {p: p.stat().st_mtime_ns for p in sorted(run.glob("collect/*.parquet")) + sorted(run.glob("preprocess/*.parquet"))}
    assert len(finished) == 26  # 13 collect and 13 preprocess shards

    resumed = subprocess.run([*CURATE, "run", str(path), "--resume", "--no-daemon"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed run {run.name}: 1 collect units and 13 preprocess shards were taken as they were" in resumed.stdout
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # collect and preprocess did not run again
    assert json.loads((run / "_run.json").read_text())["status"] == "published"
    with sqlite3.connect(home / "prefect.db") as db:
        (state,) = db.execute("select state_type from flow_run where id = ?", (record["flow_run_id"],)).fetchone()
    assert state == "CRASHED"  # marked by the resumed run: a killed process cannot say so itself

    stages, rows = reference
    assert json.loads((out / "versions" / "v1" / "manifest.json").read_text())["stages"] == stages
    assert exported_rows(out, "v1") == rows != {}


def stop_by_sigterm(process: subprocess.Popen) -> None:
    """SIGTERM a `curate run` (its stderr piped) and check that it stopped as a stopped run does."""
    # Prefect raises SIGTERM as an exception wherever the main thread is. Landing in a garbage-collector
    # callback, Python swallows it ("Exception ignored"), so the test, like a supervisor, sends it again.
    for _ in range(6):
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    # Prefect marks the run Crashed and ends the process with the signal it got; landing inside pydantic
    # (serializing a task's context) the signal comes out wrapped, and curate reports the failed run
    assert process.returncode in (1, -signal.SIGTERM), stderr[-3000:]
    assert "TerminationSignal" in stderr or "Execution was aborted by a termination signal" in stderr, stderr[-3000:]


@pytest.mark.own_services
def test_sigterm_stops_a_run_cleanly_and_leaves_no_half_written_version(tmp_path):
    config = e2e_config(str(E2E / "*.jsonl*"), str(tmp_path / "out")) | {"collect": {"shard_rows": 10},
                                                                          "export": {"version": "v1"}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    home, out = tmp_path / "home", tmp_path / "out"
    env = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    stopped = subprocess.Popen([*CURATE, "run", str(path), "--no-daemon"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: list(out.glob("runs/*/preprocess/_done/*.json")) or stopped.poll() is not None, 300,
             "the run's preprocess stage")
    stop_by_sigterm(stopped)
    wait_for(lambda: not session_processes(stopped.pid), 30, "the stopped run's server and workers to exit")
    (run,) = list(out.glob("runs/*"))
    record = json.loads((run / "_run.json").read_text())
    assert record["status"] == "failed" and "TerminationSignal" in record["message"], record
    assert not (out / "versions").exists() and not (out / "index").exists() and not list(out.glob("claims/*"))
    with sqlite3.connect(home / "prefect.db") as db:
        (state,) = db.execute("select state_type from flow_run where id = ?", (record["flow_run_id"],)).fetchone()
    assert state in ("CRASHED", "FAILED")  # FAILED when the signal came out wrapped


def test_gc_removes_what_no_published_version_needs_and_spares_live_runs(tmp_path, capsys):
    from flows.cli import main
    from tasks import runs
    from tasks.io.layout import RunPaths
    from tasks.io.storage import Store

    store = Store(str(tmp_path / "out"))
    for run_id, version, status in [("r-published", "v1", "published"), ("r-failed", "v2", "failed"),
                                    ("r-live", "v3", "running"), ("r-killed", "v4", "running")]:
        record = runs.begin(store, RunPaths(run_id), None, "hash", version, [])
        if status != "running":
            runs.end(store, record, status)
        store.write_bytes(b"x", "runs", run_id, "collect", "part-00000.parquet")
        store.write_bytes(b"x", "versions", version, "train", "part-00000.parquet")
        store.write_bytes(b"x", "index", version, "docs", "part-00000.parquet")
    store.write_json({"run_id": "r-published"}, "versions", "v1", "manifest.json")
    store.write_json({}, "index", "v1", "index.json")
    killed = json.loads(store.read_bytes("runs", "r-killed", "_run.json")) | {"pid": 2 ** 22 + 1}  # no such process
    store.write_json(killed, "runs", "r-killed", "_run.json")
    store.write_bytes(b"r-killed\n", "claims", "v4")
    (tmp_path / "gc.yaml").write_text(f"sources: [{{uri: {E2E}/part-a.jsonl}}]\noutput: out\n")

    root = tmp_path / "out"
    assert main(["gc", str(tmp_path / "gc.yaml"), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"would remove {root}/runs/r-failed", f"would remove {root}/runs/r-killed",
        f"would remove {root}/versions/v2", f"would remove {root}/versions/v4",
        f"would remove {root}/index/v2", f"would remove {root}/index/v4", f"would remove {root}/claims/v4",
        "7 to remove"]
    assert main(["gc", str(tmp_path / "gc.yaml")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "released killed run r-killed: its claim and uncommitted version v4",
        f"removed {root}/runs/r-failed", f"removed {root}/runs/r-killed", f"removed {root}/versions/v2",
        f"removed {root}/index/v2", "4 removed"]
    assert sorted(str(p.relative_to(root)) for p in root.glob("*/*")) == [
        "index/v1", "index/v3", "runs/r-live", "runs/r-published", "versions/v1", "versions/v3"]


@pytest.mark.own_services
def test_a_worker_killed_mid_stage_costs_nothing(reference, prefect_server, tmp_path):
    """The test's own scheduler and two workers (no nanny: a killed worker stays dead); one is killed with
    -9 while preprocess runs, Dask reruns its tasks on the other, and the version is the one a run on an
    undisturbed cluster publishes."""
    from conftest import free_port

    url, _, _ = prefect_server
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": f"{url}/api", "PYTHONPATH": str(ROOT)}
    dask = [str(Path(sys.executable).parent / "dask")]
    logs = open(tmp_path / "dask.log", "w")
    scheduler = subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 env=env, stdout=logs, stderr=logs)
    workers = [subprocess.Popen([*dask, "worker", f"tcp://127.0.0.1:{port}", "--no-nanny", "--nthreads", "1",
                                 "--no-dashboard", "--name", f"w{i}"], env=env, stdout=logs, stderr=logs)
               for i in range(2)]
    try:
        config = e2e_config(str(E2E / "*.jsonl*"), str(tmp_path / "out")) | SETTINGS | {
            "dask": {"address": f"tcp://127.0.0.1:{port}"}}
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        out = tmp_path / "out"

        def kill_one_worker_mid_preprocess():
            wait_for(lambda: list(out.glob("runs/*/preprocess/_done/*.json")), 300, "preprocess")
            workers[0].send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_one_worker_mid_preprocess)
        killer.start()
        with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):
            summary = run_pipeline(PipelineConfig.model_validate(config))
        killer.join()
        assert workers[0].wait(timeout=5) == -signal.SIGKILL
        (run,) = list(out.glob("runs/*"))
        done = sorted(p.name for p in run.glob("preprocess/_done/*.json"))
        assert len(done) == 13  # every shard, the killed worker's among them, was preprocessed
    finally:
        for p in [*workers, scheduler]:
            p.terminate()
            p.wait(timeout=30)
        logs.close()
    stages, rows = reference
    assert summary["stages"] == stages
    assert exported_rows(out, "v1") == rows != {}

