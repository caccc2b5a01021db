"""The Prefect UI in a real browser (Debian's Chromium, headless, driven by Playwright): open a served
deployment, start a custom run from its parameter form with a changed field, and watch it complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from conftest import E2E, e2e_config, serving, wait_for

CHROMIUM = os.environ.get("CURATE_CHROMIUM", "/usr/bin/chromium")
# A closed network: without these, Chromium keeps trying to reach Google's hosts at every start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's package (or set CURATE_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def form_field(page, description: str):
    """The input of the parameter-form property whose help text is `description` (the config's own)."""
    prop = page.get_by_text(description, exact=True).locator(
        "xpath=ancestor::div[contains(concat(' ', @class, ' '), ' p-label ')][1]")
    return prop.locator(":scope > .p-label__body").locator("input, textarea").first


@pytest.mark.own_services
def test_custom_run_from_the_deployment_form_completes(prefect_server, browser, tmp_path):
    config = e2e_config(str(E2E / "*.jsonl*"), str(tmp_path / "out"), incremental=True)
    config["export"]["name"] = "served"
    url = prefect_server[0]
    with serving(prefect_server, config, tmp_path, "ui") as api:
        deployment = httpx.get(f"{api}/deployments/name/curate/ui").json()["id"]
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/deployments/deployment/{deployment}", wait_until="networkidle")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run").click()
        name = form_field(page, "dataset name on the dataset card")
        assert name.input_value() == "served"  # the form starts from the deployment's parameters
        name.fill("from-the-ui")
        page.get_by_role("button", name="Submit").click()
        page.get_by_text("scheduled to start now").first.wait_for()  # the UI's own confirmation
        token = httpx.get(f"{api}/csrf-token", params={"client": "test-ui"}).json()["token"]  # `curate server` asks
        runs = wait_for(lambda: httpx.post(f"{api}/flow_runs/filter", json={
            "deployments": {"id": {"any_": [deployment]}}}, headers={"Prefect-Csrf-Token": token,
                                                                     "Prefect-Csrf-Client": "test-ui"}).json(),
                        30, "the flow run")
        run_id = runs[0]["id"]
        page.goto(f"{url}/runs/flow-run/{run_id}", wait_until="networkidle")
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=240_000)  # the UI follows the run live
        title = page.get_by_text("from-the-ui: incremental ingest, ").first.inner_text()
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("run-summary").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "run.png"))
        run = httpx.get(f"{api}/flow_runs/{run_id}").json()
    assert title.startswith("from-the-ui: incremental ingest, ") and run["state_type"] == "COMPLETED"
    assert run["parameters"]["config"]["export"]["name"] == "from-the-ui"
    assert run["parameters"]["config"]["sources"][0]["id_field"] == "id"  # untouched fields are kept as served
    latest = (tmp_path / "out" / "LATEST").read_text().strip()
    manifest = json.loads((tmp_path / "out" / "versions" / latest / "manifest.json").read_text())
    assert (manifest["name"], manifest["documents"]) == ("from-the-ui", 28)
