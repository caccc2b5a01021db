"""`curate server` and `curate serve` against a real Prefect server on 127.0.0.1: a served deployment, a run
triggered through the Prefect client with custom parameters, its artifacts and published version, then a
scheduled-style run that ingests only the files added since, and one that finds nothing new."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pytest

from conftest import CURATE, E2E, ROOT, FRESH, e2e_config, serving



@pytest.mark.own_services
def test_server_says_where_and_serve_needs_one(prefect_server):
    url, _, log = prefect_server
    assert log.read_text().startswith(f"Prefect UI at {url}, API at {url}/api.")
    assert httpx.get(url, timeout=5).status_code == 200  # the UI
    out = subprocess.run([*CURATE, "serve", str(ROOT / "examples" / "quickstart.yaml")], capture_output=True, text=True,
                         env={**os.environ, "PREFECT_API_URL": ""}, cwd=ROOT)
    assert out.returncode == 2 and "curate server" in out.stderr


@pytest.mark.own_services
def test_served_deployment_runs_with_custom_parameters_then_ingests_only_new_files(prefect_server, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    src = tmp_path / "src"
    shutil.copytree(E2E, src)
    config = e2e_config(str(src / "*.jsonl*"), str(tmp_path / "out"), incremental=True)
    config["export"]["name"] = "served"

    async def read(what, **kwargs):
        async with get_client() as client:
            return await getattr(client, what)(**kwargs)

    with serving(prefect_server, config, tmp_path, "e2e", "--cron", "0 3 * * *") as api, \
            temporary_settings(updates={PREFECT_API_URL: api}):
        found = asyncio.run(read("read_deployment_by_name", name="curate/e2e"))
        assert found.schedules[0].schedule.cron == "0 3 * * *"
        custom = {**config, "export": {**config["export"], "name": "from-the-client", "version": "v-custom"}}
        first = run_deployment("curate/e2e", parameters={"config": custom}, timeout=300)
        assert first.state.is_completed(), first.state.message
        artifacts = {a.key: a for a in asyncio.run(read("read_artifacts", artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[first.id]))))}

        published = read_exported(tmp_path / "out", "v-custom")
        ids = {r["id"] for r in published}
        copy = next(r for r in map(json.loads, (src / "part-b.jsonl").read_text().splitlines()) if r["id"] in ids)
        (src / "new.jsonl").write_text(json.dumps({"id": "copy", "text": copy["text"]}) + "\n"
                                       + json.dumps({"id": "fresh", "text": FRESH}) + "\n")
        second = run_deployment("curate/e2e", timeout=300)  # the deployment's own parameters
        assert second.state.is_completed(), second.state.message
        third = run_deployment("curate/e2e", timeout=300)
    gates = ("raw", "clean", "dedup", "export")
    assert {"run-summary", "run-report", *(f"gate-{g}{kind}" for g in gates for kind in ("", "-table", "-docs"))
            } <= set(artifacts)
    table = artifacts["gate-raw-table"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert rows and {r["result"] for r in rows} == {"pass"} and "expect_column_values_to_not_be_null" in {
        r["expectation"] for r in rows}
    link = artifacts["gate-raw-docs"].data  # markdown: [text](url)
    assert link.startswith("[Data Docs of gate raw](") and link.endswith("/reports/gates/raw/index.html)")
    assert artifacts["run-report"].data.endswith("/versions/v-custom/report.html)")
    manifest = json.loads((tmp_path / "out" / "versions" / "v-custom" / "manifest.json").read_text())
    assert manifest["name"] == "from-the-client" and manifest["documents"] == 28 and len(published) == 28

    latest = (tmp_path / "out" / "LATEST").read_text().strip()
    manifest = json.loads((tmp_path / "out" / "versions" / latest / "manifest.json").read_text())
    assert (manifest["name"], manifest["base_version"], manifest["documents"]) == ("served", "v-custom", 29)
    assert [Path(f["uri"]).name for f in manifest["sources"]] == ["new.jsonl"]  # only the new file
    assert manifest["stages"]["dedup"]["rejected"] == {"dedup.exact": 1}
    removed = read_rejected(tmp_path / "out" / "runs" / manifest["run_id"])
    assert [(r["id"], r["duplicate_of"]) for r in removed] == [("copy", copy["id"])]
    assert [r["id"] for r in read_exported(tmp_path / "out", latest)] == ["fresh"]
    assert (third.state.name, third.state.is_completed()) == ("Nothing new", True)
    assert (tmp_path / "out" / "LATEST").read_text().strip() == latest


def read_exported(out: Path, version: str) -> list[dict]:
    return ds.dataset(sorted(str(p) for p in (out / "versions" / version).glob("*/part-*.parquet"))).to_table().to_pylist()


def read_rejected(run: Path) -> list[dict]:
    return ds.dataset(str(run / "dedup" / "_rejected")).to_table().to_pylist()
