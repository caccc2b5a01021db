"""The run daemon (flows.daemon): a real daemon, started by a real `curate run` as a user's first run starts it."""

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CURATE, E2E, ROOT, SERVICES, e2e_config, wait_for
from test_reliability import exported_rows, stop_by_sigterm

pytestmark = pytest.mark.own_services
STARTING = "Starting the run daemon"


@pytest.fixture(scope="module")
def daemon_env(tmp_path_factory):
    """A user's environment without a Prefect server or a scheduler, whose PREFECT_HOME is deep enough that
    the daemon's socket path would pass the 107 bytes a Unix socket path may have."""
    home = tmp_path_factory.mktemp("daemon") / ("h" * 60) / ("o" * 60)
    env = {k: v for k, v in os.environ.items() if k not in SERVICES} | {"PREFECT_HOME": str(home),
                                                                        "PYTHONPATH": str(ROOT)}
    yield env
    stopped = subprocess.run([*CURATE, "daemon", "stop"], env=env, capture_output=True, text=True)
    assert stopped.stdout == "stopped 1 run daemon(s)\n", stopped


def curate(env, *args, **kwargs):
    return subprocess.run([*CURATE, *args], env=env, capture_output=True, text=True, timeout=600, **kwargs)


def config_file(tmp_path, name: str, **extra) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(e2e_config(str(E2E / "*.jsonl*"), str(tmp_path / name)) | extra))
    return str(path)


def daemon_folder(env):
    (state,) = Path(env["PREFECT_HOME"]).glob("curate-daemon/*/daemon.json")
    return state.parent, json.loads(state.read_text())


def test_the_first_run_starts_the_daemon_and_the_next_runs_reuse_its_server_and_cluster(daemon_env, tmp_path):
    settings = {"export": {"version": "v1"}}
    first = curate(daemon_env, "run", config_file(tmp_path, "first", **settings), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert STARTING in first.stderr and "published: " + str(tmp_path / "first" / "versions" / "v1") in first.stdout
    folder, state = daemon_folder(daemon_env)
    assert len(str(folder / "socket")) > 107 and oct(folder.stat().st_mode & 0o777) == "0o700"

    second = curate(daemon_env, "run", config_file(tmp_path, "second", **settings), cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert STARTING not in second.stderr and "warning" not in second.stderr
    assert daemon_folder(daemon_env)[1] == state  # the same daemon
    assert exported_rows(tmp_path / "first", "v1") == exported_rows(tmp_path / "second", "v1") != {}
    with sqlite3.connect(os.path.join(daemon_env["PREFECT_HOME"], "prefect.db")) as db:
        states = db.execute("select state_type from flow_run").fetchall()
    assert states == [("COMPLETED",), ("COMPLETED",)]  # both reported to the daemon's server

    status = curate(daemon_env, "daemon", "status")
    assert status.stdout.startswith(f"pid {state['pid']}: up ") and state["api_url"] in status.stdout


def test_a_sigterm_to_the_caller_stops_its_run_and_not_the_daemon(daemon_env, tmp_path):
    out = tmp_path / "stopped"
    caller = subprocess.Popen([*CURATE, "run", config_file(tmp_path, "stopped", collect={"shard_rows": 10})],
                              env=daemon_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: list(out.glob("runs/*/preprocess/_done/*.json")) or caller.poll() is not None, 300,
             "the run's preprocess stage")
    stop_by_sigterm(caller)
    (run,) = list(out.glob("runs/*"))
    record = json.loads((run / "_run.json").read_text())
    assert record["status"] == "failed" and "TerminationSignal" in record["message"], record
    assert not (out / "versions").exists()
    assert curate(daemon_env, "daemon", "status").stdout.startswith(f"pid {daemon_folder(daemon_env)[1]['pid']}:")


def test_a_caller_killed_outright_stops_its_run(daemon_env, tmp_path):
    out = tmp_path / "killed"
    caller = subprocess.Popen([*CURATE, "run", config_file(tmp_path, "killed", collect={"shard_rows": 10})],
                              env=daemon_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: list(out.glob("runs/*/preprocess/_done/*.json")) or caller.poll() is not None, 300,
             "the run's preprocess stage")
    caller.kill()
    caller.wait()
    (run,) = list(out.glob("runs/*"))
    record = wait_for(lambda: (r := json.loads((run / "_run.json").read_text()))["status"] == "failed" and r, 60,
                      "the run of a killed caller to fail")
    assert "TerminationSignal" in record["message"] and not (out / "versions").exists()


def test_the_daemon_takes_runs_from_its_own_user_only(daemon_env, tmp_path):
    folder, _ = daemon_folder(daemon_env)

    def connect_as_nobody() -> str:
        """What another user's process gets from the daemon's socket."""
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            import socket
            os.close(reader)
            try:
                os.chdir(folder)
                sock = socket.socket(socket.AF_UNIX)
                os.setuid(65534)
                sock.connect("socket")
                sock.settimeout(30)
                got = f"answer {sock.recv(16)!r}"
            except OSError as e:
                got = type(e).__name__
            os.write(writer, got.encode())
            os._exit(0)
        os.close(writer)
        os.waitpid(pid, 0)
        with os.fdopen(reader) as f:
            return f.read()

    assert connect_as_nobody() == "PermissionError"  # its folder (0700) and socket (0600) are its user's alone
    folder.chmod(0o711)  # were they open to all, the daemon itself would still refuse
    (folder / "socket").chmod(0o666)
    try:
        assert connect_as_nobody() == "answer b''"
    finally:
        (folder / "socket").chmod(0o600)
        folder.chmod(0o700)
    assert "of user 65534" in (folder / "daemon.log").read_text()


def test_a_run_that_cannot_use_a_daemon_runs_without_one_and_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SERVICES} | {"PREFECT_HOME": str(tmp_path / "home"),
                                                                        "PYTHONPATH": str(ROOT)}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "curate-daemon").write_text("a file where the daemons' folder would be")
    done = curate(env, "run", config_file(tmp_path, "alone"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "curate: warning: running without the run daemon: no folder for it" in done.stderr
    assert STARTING not in done.stderr and "published: " in done.stdout
