"""The run daemon: what `curate run` would start and import for every run (a Prefect server, a Dask cluster,
Prefect, Great Expectations and the stages: about 10 s on 2 cores), started once and reused by the next runs,
as Gradle's daemon is.

- The first `curate run` without PREFECT_API_URL or a named scheduler starts it and
  waits until it listens; it exits after `CURATE_DAEMON_IDLE_SECONDS` (600) without a run, or on
  `curate daemon stop`. `curate run --no-daemon` runs as before, in its own process.
- One daemon per Python, curate code, installed packages and environment (`key`): its folder under
  PREFECT_HOME/curate-daemon/ (0700) holds its socket, state and log. Changed code gets a new daemon.
- Each run is a process of its own, forked from a forkserver that imported the flow: it takes the caller's
  stdin, stdout and stderr (passed over the socket), working folder and environment, so it prints and ends
  as `curate run --no-daemon` would; Ctrl-C and SIGTERM are passed on, and a caller that dies stops its run.
  Its Prefect API is the daemon's server; its cluster is the daemon's when its `dask` settings are the
  defaults and it holds no plain credentials (the workers could not see them), else its own.
- The daemon takes connections only from its own user (SO_PEERCRED), and reads no run's request: the run's
  process does.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOCKET = "socket"  # bound and reached relative to the daemon's folder: a Unix socket path has at most 107 bytes
STATE = "daemon.json"
VOLATILE = {"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES"}  # differ between shells, change no run
STOP_GRACE_S = 10
SIGNALS = {b"I": signal.SIGINT, b"T": signal.SIGTERM}


class Unavailable(Exception):
    """No daemon could be reached or started; the run goes on without one."""


@dataclass(frozen=True)
class WarmServices:
    """What a daemon hands each run's process: its Prefect API, and its cluster with the arguments it was made by."""
    api_url: str
    scheduler: str
    security: object
    cluster_kwargs: dict


def key(environ) -> str:
    """Which daemon a run may use: the same Python, curate code, installed packages and environment."""
    import site

    parts = [sys.executable, *(f"{k}={v}" for k, v in sorted(environ.items()) if k not in VOLATILE)]
    for package in site.getsitepackages():
        parts.append(f"{package} {os.stat(package).st_mtime_ns}")
    for path in sorted([*ROOT.joinpath("flows").rglob("*.py"), *ROOT.joinpath("tasks").rglob("*.py")]):
        stat = path.stat()
        parts.append(f"{path} {stat.st_mtime_ns} {stat.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect") / "curate-daemon"


def private_folder(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise Unavailable(f"{path} belongs to another user")
    path.chmod(0o700)
    return path


@contextmanager
def inside(folder: Path):
    """This process works in `folder` for the block (the caller is single-threaded when it connects)."""
    back = os.open(".", os.O_RDONLY)
    try:
        os.chdir(folder)
        yield
    finally:
        os.fchdir(back)
        os.close(back)


# The caller: `curate run` ---------------------------------------------------------------------------------


def run(argv: list[str]) -> int | None:
    """Run `curate <argv>` in a daemon's process, started if none listens; None if no daemon can be used."""
    try:
        folder = private_folder(home() / key(os.environ))
    except (OSError, Unavailable) as e:
        return warn(f"no folder for it ({e})")
    for _ in range(2):  # a daemon that exits idle as we connect: start a new one, once
        try:
            with connected(folder) as sock:
                code = converse(sock, argv)
        except Unavailable as e:
            return warn(str(e))
        if code is not None:
            return code
    return warn("it closed two connections before starting the run")


def warn(why: str) -> None:
    print(f"curate: warning: running without the run daemon: {why}", file=sys.stderr)
    return None


@contextmanager
def connected(folder: Path):
    sock = connect(folder)
    if sock is None:
        with open(folder / "lock", "w") as lock:  # one caller starts the daemon, the others wait for it
            fcntl.flock(lock, fcntl.LOCK_EX)
            sock = connect(folder) or start(folder)
    with sock:
        yield sock


def connect(folder: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with inside(folder):
            sock.connect(SOCKET)
        return sock
    except OSError:
        sock.close()
        return None


def start(folder: Path) -> socket.socket:
    """Start a daemon in `folder` and connect to it once it listens (its server and cluster are up by then)."""
    with open(folder / "daemon.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-c", "import sys; from flows.daemon import main; main(sys.argv[1])",
                                    str(folder)], cwd=folder,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    print(f"Starting the run daemon (pid {process.pid}); later runs reuse it, `curate daemon stop` ends it",
          file=sys.stderr)
    from flows.server import startup_timeout

    deadline = time.monotonic() + startup_timeout()
    while time.monotonic() < deadline:
        if process.poll() not in (None, 0):  # 0: another daemon had started, which will listen
            tail = (folder / "daemon.log").read_text(errors="replace")[-1500:]
            raise Unavailable(f"it exited with code {process.returncode} as it started:\n{tail}")
        sock = connect(folder)
        if sock:
            return sock
        time.sleep(0.05)
    process.terminate()
    raise Unavailable("it did not listen within PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")


def converse(sock: socket.socket, argv: list[str]) -> int | None:
    """Hand the run our stdin, stdout, stderr, folder and environment; pass signals on; return its exit code.
    None if the daemon closed the connection before the run started."""
    with open(os.devnull, "r+b") as devnull:
        fds = [fd if is_open(fd) else devnull.fileno() for fd in (0, 1, 2)]
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        try:
            socket.send_fds(sock, [struct.pack("!I", len(request))], fds)
            sock.sendall(request)
        except OSError:
            return None
    reply = b""
    for name, code in (("SIGINT", b"I"), ("SIGTERM", b"T"), ("SIGHUP", b"T")):
        signal.signal(getattr(signal, name), lambda *_, code=code: sock.send(code))
    while True:
        try:
            chunk = sock.recv(64)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        reply += chunk
    if not reply.startswith(b"A"):
        return None
    if not reply.endswith(b"\n"):
        print(f"curate: the run daemon ended before the run did (its log: {home()}/*/daemon.log)", file=sys.stderr)
        return 1
    code = int(reply[1:-1].decode().rsplit("X", 1)[-1])
    if code < 0:  # the run's process died by a signal: so does this one, as the run's own process would
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


# The daemon ------------------------------------------------------------------------------------------------


def run_one(conn: socket.socket, services: WarmServices) -> None:
    """A run's process: take the caller's request, become it (streams, folder, environment), run `curate`."""
    header, fds, _, _ = socket.recv_fds(conn, 4, 3)
    size, = struct.unpack("!I", header + exactly(conn, 4 - len(header)))
    request = json.loads(exactly(conn, size))
    for fd, target in zip(fds, (0, 1, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import dask
    from prefect.context import refresh_global_settings_context

    dask.config.refresh()
    refresh_global_settings_context()
    conn.sendall(b"A")
    threading.Thread(target=watch_caller, args=(conn,), name="curate-caller", daemon=True).start()

    from flows import cli

    code = cli.main(request["argv"], services)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the daemon tells the caller how this process ended


def exactly(conn: socket.socket, size: int) -> bytes:
    """`size` bytes of the caller's request; a caller gone before it sent them all ends this process."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            os._exit(1)
        data += chunk
    return data


def watch_caller(conn: socket.socket) -> None:
    """Pass the caller's signals to this process; if the caller dies, stop the run as SIGTERM does."""
    while True:
        try:
            message = conn.recv(1)
        except OSError:
            message = b""
        if message in SIGNALS:
            os.kill(os.getpid(), SIGNALS[message])
            continue
        # twice: Python swallows a signal's exception that lands in a garbage-collector callback
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(STOP_GRACE_S / 2)
        os.kill(os.getpid(), signal.SIGKILL)


class Daemon:
    """Listens on its folder's socket; forks a process per run; tells each caller how its run's process ended."""

    def __init__(self, folder: Path, idle_s: float):
        self.folder, self.idle_s = folder, idle_s
        self.runs: dict[int, tuple] = {}  # by the process's sentinel: the process and its caller's connection
        self.listener: socket.socket | None = None

    def serve(self) -> None:
        import multiprocessing

        from distributed import LocalCluster
        from distributed.security import Security

        from flows.config import DaskSettings
        from flows.runtime import cluster_for
        from flows.server import TemporaryServer, startup_timeout
        from flows.warm import start_forkserver

        server = TemporaryServer()
        try:
            start_forkserver(["flows.cli", "flows.curate", "flows.daemon"])
            security = Security.temporary()
            kwargs = cluster_for(DaskSettings(), {})["cluster_kwargs"]
            with LocalCluster(**kwargs | {"security": security}) as cluster:
                services = WarmServices(server.ready(startup_timeout()), cluster.scheduler_address, security,
                                        kwargs)
                try:
                    self.listen(multiprocessing.get_context("forkserver"), services)
                finally:
                    self.shut_down()
        finally:
            server.stop()

    def listen(self, context, services: WarmServices) -> None:
        from multiprocessing.connection import wait

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(SOCKET)
        os.chmod(SOCKET, 0o600)
        self.listener.listen(16)
        (self.folder / STATE).write_text(json.dumps({"pid": os.getpid(), "api_url": services.api_url,
                                                      "scheduler": services.scheduler, "started": time.time()}))
        print(f"listening: Prefect API {services.api_url}, Dask scheduler {services.scheduler}", flush=True)
        idle_since = time.monotonic()
        while self.runs or time.monotonic() - idle_since < self.idle_s:
            timeout = None if self.runs else self.idle_s - (time.monotonic() - idle_since)
            for ready in wait([self.listener, *self.runs], timeout):
                if ready is self.listener:
                    self.accept(context, services)
                else:
                    self.finish(ready)
            idle_since = time.monotonic() if self.runs else idle_since
        print(f"idle for {self.idle_s:.0f} s: exiting", flush=True)

    def accept(self, context, services: WarmServices) -> None:
        conn, _ = self.listener.accept()
        pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != os.getuid():
            print(f"refused a connection from pid {pid} of user {uid}", flush=True)
            conn.close()
            return
        process = context.Process(target=run_one, args=(conn, services), name="curate run")
        process.start()
        self.runs[process.sentinel] = (process, conn)

    def finish(self, sentinel: int) -> None:
        process, conn = self.runs.pop(sentinel)
        process.join()
        with conn:
            try:
                conn.sendall(f"X{process.exitcode}\n".encode())
            except OSError:  # the caller is gone
                pass

    def shut_down(self) -> None:
        """Stop listening first, so a caller that connects now starts a new daemon; then stop the runs."""
        if self.listener:
            self.listener.close()
            for name in (SOCKET, STATE):
                (self.folder / name).unlink(missing_ok=True)
        for process, _ in self.runs.values():
            process.terminate()
        for sentinel, (process, _) in list(self.runs.items()):
            process.join(STOP_GRACE_S)
            if process.is_alive():
                process.kill()
            self.finish(sentinel)


def daemons() -> list[tuple[Path, dict]]:
    """The daemons of this PREFECT_HOME that are alive, with their state."""
    found = []
    for state in sorted(home().glob(f"*/{STATE}")):
        try:
            data = json.loads(state.read_text())
            os.kill(data["pid"], 0)
        except (OSError, ValueError, KeyError):
            continue
        found.append((state.parent, data))
    return found


def stop_all() -> int:
    """SIGTERM every daemon of this PREFECT_HOME and wait for each to exit; how many there were."""
    found = daemons()
    for _, data in found:
        os.kill(data["pid"], signal.SIGTERM)
    for folder, data in found:
        deadline = time.monotonic() + STOP_GRACE_S + 5
        while (folder / STATE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return len(found)


def main(folder: str) -> None:
    """A daemon's life, holding its folder's lock: a second daemon started for the same folder leaves at once,
    and the callers reach the first."""
    with open(Path(folder) / "daemon.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"pid {os.getpid()}: another daemon serves this folder", flush=True)
            return
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        Daemon(Path(folder), float(os.environ.get("CURATE_DAEMON_IDLE_SECONDS", "600"))).serve()

