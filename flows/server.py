"""The temporary Prefect API server of a run without PREFECT_API_URL: a uvicorn process serving Prefect's
API app on a free loopback port, as Prefect's own ephemeral server, but started without importing Prefect's
server code here, so `curate run` can start it first and import, read its config and start its cluster
while the server boots. It ends with its parent however the parent ends (even `kill -9`)."""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child process before exec: the kernel sends it SIGTERM when its parent dies, even by SIGKILL."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def startup_timeout() -> float:
    """How long to wait for a temporary server (the variable Prefect's own ephemeral server honours)."""
    return float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TemporaryServer:
    """Starts at once; `ready()` waits for its health check."""

    def __init__(self):
        import importlib.util  # where Prefect is installed, without importing it

        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        # its output goes to a file, not a pipe: a pipe nobody reads would stall the server once full
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        print(f"Starting temporary Prefect server on http://127.0.0.1:{self.port}", file=sys.stderr)

    def ready(self, timeout: float) -> str:
        """The API URL once the server answers; an error with the server's own output if it died or timed out."""
        deadline = time.monotonic() + timeout
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self.log.seek(0)
                    raise RuntimeError(f"the temporary Prefect server exited with code {self.process.returncode}: "
                                       f"{self.log.read().decode(errors='replace')[-2000:]}")
                try:
                    if client.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                        return self.api_url
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the temporary Prefect server did not answer within {timeout:.0f} s "
                           "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class SharedServer:
    """A server another process owns and has started (a run daemon's): ready, and not this run's to stop."""

    def __init__(self, api_url: str):
        self.api_url = api_url

    def ready(self, timeout: float) -> str:
        return self.api_url

    def stop(self) -> None:
        pass
