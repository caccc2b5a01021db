"""`curate server` and `curate serve` against a real Prefect server on 127.0.0.1: a served deployment, a run
triggered through the Prefect client with custom parameters, its artifacts and published version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
E2E = Path(__file__).resolve().parent / "data" / "e2e"
CURATE = [sys.executable, "-m", "flows.cli"]


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception:  # not up yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds} s")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": ""}
    log = home / "server.log"
    with open(log, "w") as out:  # a file, not a pipe nobody reads: a full pipe would block the server
        server = subprocess.Popen([*CURATE, "server", "--port", str(port)], env=env, cwd=ROOT,
                                  stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/api/health", timeout=2).status_code == 200, 120, "Prefect server")
        yield url, home, log
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_server_says_where_and_serve_needs_one(prefect_server):
    url, _, log = prefect_server
    assert log.read_text().startswith(f"Prefect UI at {url}, API at {url}/api.")
    assert httpx.get(url, timeout=5).status_code == 200  # the UI
    out = subprocess.run([*CURATE, "serve", str(ROOT / "examples" / "quickstart.yaml")], capture_output=True, text=True,
                         env={**os.environ, "PREFECT_API_URL": ""}, cwd=ROOT)
    assert out.returncode == 2 and "curate server" in out.stderr


def test_served_deployment_runs_with_custom_parameters(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, home, _ = prefect_server
    config = {"sources": [{"uri": str(E2E / "*.jsonl*"), "id_field": "id"}], "output": str(tmp_path / "out"),
              "collect": {"shard_rows": 40}, "preprocess": {"language": {"allowed": ["en"]}},
              "export": {"name": "served", "splits": {"train": 0.8, "validation": 0.1, "test": 0.1}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"{url}/api"}
    with open(tmp_path / "serve.log", "w") as out:
        serve = subprocess.Popen([*CURATE, "serve", str(path), "--cron", "0 3 * * *", "--name", "e2e"], env=env,
                                 cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):
            async def deployment():
                async with get_client() as client:
                    return await client.read_deployment_by_name("curate/e2e")

            import asyncio
            found = wait_for(lambda: asyncio.run(deployment()), 60, "deployment curate/e2e")
            assert found.schedules[0].schedule.cron == "0 3 * * *"
            custom = {**config, "export": {**config["export"], "name": "from-the-client", "version": "v-custom"}}
            run = run_deployment("curate/e2e", parameters={"config": custom}, timeout=300)
            assert run.state.is_completed(), run.state.message

            async def artifacts():
                from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

                async with get_client() as client:
                    return await client.read_artifacts(artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
            found = {a.key: a for a in asyncio.run(artifacts())}
            keys = set(found)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    gates = ("raw", "clean", "dedup", "export")
    assert {"run-summary", *(f"gate-{g}{kind}" for g in gates for kind in ("", "-table", "-docs"))} <= keys
    table = found["gate-raw-table"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert rows and {r["result"] for r in rows} == {"pass"} and "expect_column_values_to_not_be_null" in {
        r["expectation"] for r in rows}
    link = found["gate-raw-docs"].data  # markdown: [text](url)
    assert link.startswith("[Data Docs of gate raw](") and link.endswith("/reports/gates/raw/index.html)")
    manifest = json.loads((tmp_path / "out" / "versions" / "v-custom" / "manifest.json").read_text())
    assert manifest["name"] == "from-the-client"
    assert sum(s["rows"] for s in manifest["splits"].values()) == 28
