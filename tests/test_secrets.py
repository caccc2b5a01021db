"""Credentials are never written anywhere: not in the Prefect database (a run's or a deployment's
parameters), logs, manifests, reports or any file a run leaves, on disk or in the bucket."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CURATE, E2E, ROOT, e2e_config, serving
from tasks.io import secrets

KEY, SECRET = "AKIACURATETEST000042", "curate-test-secret-0f9e8d7c6b5a"


def test_plain_credentials_are_found_masked_and_held_in_the_environment(monkeypatch):
    config = {"storage_options": {"key": KEY, "client_kwargs": {"aws_secret_access_key": SECRET}, "anon": False},
              "sources": [{"uri": "s3://b/x", "storage_options": {"token": {"env": "T"}, "password": ""}}]}
    assert secrets.plain_secrets(config) == ["storage_options.key", "storage_options.client_kwargs.aws_secret_access_key"]
    assert secrets.masked(config) == {
        "storage_options": {"key": "***", "client_kwargs": {"aws_secret_access_key": "***"}, "anon": False},
        "sources": [{"uri": "s3://b/x", "storage_options": {"token": {"env": "T"}, "password": ""}}]}
    monkeypatch.delenv("CURATE_SECRET_STORAGE_OPTIONS_KEY", raising=False)
    held = secrets.held_in_environment(config)
    assert held["storage_options"] == {
        "key": {"env": "CURATE_SECRET_STORAGE_OPTIONS_KEY"},
        "client_kwargs": {"aws_secret_access_key": {"env": "CURATE_SECRET_STORAGE_OPTIONS_CLIENT_KWARGS_AWS_SECRET_ACCESS_KEY"}},
        "anon": False}
    assert held["sources"] == config["sources"] and secrets.plain_secrets(held) == []
    assert os.environ["CURATE_SECRET_STORAGE_OPTIONS_KEY"] == KEY
    assert secrets.resolve(held["storage_options"], "storage_options") == config["storage_options"]


def test_a_reference_that_cannot_be_resolved_names_the_option_and_what_is_missing(monkeypatch):
    monkeypatch.delenv("CURATE_NOT_SET", raising=False)
    with pytest.raises(secrets.SecretUnavailable, match=r"^sources\[0\]\.storage_options\.secret names the environment "
                                                         r"variable CURATE_NOT_SET, which is not set where the flow runs$"):
        secrets.resolve({"secret": {"env": "CURATE_NOT_SET"}}, "sources[0].storage_options")


def files_holding(root: Path, *needles: str, skip: Path | None = None) -> list[str]:
    """Every file under `root` (but `skip`) that contains one of `needles`, as bytes, in any form."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path != skip and any(n.encode() in path.read_bytes() for n in needles):
            found.append(str(path.relative_to(root)))
    return found


def objects_holding(fs, bucket: str, *needles: str) -> list[str]:
    return [key for key in fs.find(bucket) if any(n.encode() in fs.cat_file(key) for n in needles)]


@pytest.mark.own_services
def test_a_run_given_plain_credentials_writes_them_nowhere(s3, tmp_path):
    fs, options = s3
    (tmp_path / "conf").mkdir()
    config = e2e_config(str(E2E / "*.jsonl*"), "s3://curate/out",
                        storage_options={"key": KEY, "secret": SECRET, "client_kwargs": options["client_kwargs"]})
    path = tmp_path / "conf" / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    home, scratch, work = (tmp_path / d for d in ("home", "tmp", "work"))
    for d in (home, scratch, work):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # only the config's credentials
    env.update(PREFECT_HOME=str(home), TMPDIR=str(scratch), PYTHONPATH=str(ROOT))
    out = subprocess.run([*CURATE, "run", str(path)], capture_output=True, text=True, env=env, cwd=work, timeout=600)
    subprocess.run([*CURATE, "daemon", "stop"], env=env, check=True)  # the run daemon it started (flows.daemon)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "published: s3://curate/out/versions/" in out.stdout
    assert (home / "prefect.db").exists() and len(fs.find("curate/out")) > 20  # the database and the output exist
    assert [t for t in (out.stdout, out.stderr) if KEY in t or SECRET in t] == []
    # the run's parameters are in the database, readable, with the reference in place of the key
    assert "prefect.db" in files_holding(home, "CURATE_SECRET_STORAGE_OPTIONS_KEY")
    assert files_holding(tmp_path, KEY, SECRET, skip=path) == []  # the Prefect database, logs, scratch space
    assert objects_holding(fs, "curate", KEY, SECRET) == []       # manifest, card, report, runs, index


@pytest.mark.own_services
def test_serve_refuses_plain_credentials_and_a_served_run_keeps_references_only(prefect_server, s3, tmp_path,
                                                                               monkeypatch):
    from prefect.blocks.system import Secret
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    fs, options = s3
    url, home, _ = prefect_server
    plain = e2e_config(str(E2E / "*.jsonl*"), "s3://curate/served", storage_options={"key": KEY, "secret": SECRET})
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(plain))
    refused = subprocess.run([*CURATE, "serve", str(path)], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PREFECT_API_URL": f"{url}/api", "PREFECT_HOME": str(home)})
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"curate: {path} holds credentials in plain text (storage_options.key, "
                                     "storage_options.secret); a deployment stores its parameters")

    with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):
        Secret(value=SECRET).save("curate-test-s3-secret", overwrite=True)
    monkeypatch.setenv("CURATE_TEST_S3_KEY", KEY)  # the serving process's environment
    named = {**plain, "storage_options": {"key": {"env": "CURATE_TEST_S3_KEY"},
                                          "secret": {"secret": "curate-test-s3-secret"},
                                          "client_kwargs": options["client_kwargs"]}}
    with serving(prefect_server, named, tmp_path, "secrets") as api, temporary_settings(updates={PREFECT_API_URL: api}):
        run = run_deployment("curate/secrets", timeout=300)
        assert run.state.is_completed(), run.state.message
        assert fs.exists("curate/served/LATEST")
        assert "prefect.db" in files_holding(home, "curate-test-s3-secret")  # the reference is there, readable
        assert files_holding(home, KEY, SECRET) == []  # prefect.db (and its WAL): parameters, logs, events, blocks
        assert files_holding(tmp_path, KEY, SECRET, skip=path) == []  # the refused file is the user's own
        assert objects_holding(fs, "curate", KEY, SECRET) == []
        # plain values typed into a custom run's form reach the database before any curate code runs; the run
        # refuses to use them, so the user names them instead
        typed = run_deployment("curate/secrets", parameters={"config": plain}, timeout=300)
        # a form that names the worker's own variables would send them wherever its endpoint_url points
        leaky = run_deployment("curate/secrets", timeout=300, parameters={"config": named | {"storage_options": {
            "key": {"env": "CURATE_TEST_S3_KEY"}, "secret": {"env": "AWS_SECRET_ACCESS_KEY"},
            "client_kwargs": options["client_kwargs"]}, "dask": {"address": "tcp://127.0.0.9:8786"}}})
    assert typed.state.is_failed()
    assert typed.state.message == ("a deployed run cannot start: the run's parameters hold credentials in plain text "
                                   "(storage_options.key, storage_options.secret), which the Prefect database keeps: "
                                   "name them with {env: VAR} or {secret: block}")
    assert leaky.state.is_failed()
    assert leaky.state.message == (
        "a deployed run cannot start: storage_options.secret names the environment variable AWS_SECRET_ACCESS_KEY; "
        "a deployed run reads only variables named CURATE_* (CURATE_DEPLOYED_ENV_PREFIXES on the worker); "
        "dask.address tcp://127.0.0.9:8786 is not a scheduler this deployment runs on: leave it out (the worker's "
        "DASK_SCHEDULER_ADDRESS is used) or list it in CURATE_DEPLOYED_DASK_ADDRESSES on the worker")


def test_every_text_option_but_the_known_safe_ones_is_a_credential():
    """Before, a denylist of names missed these: each filesystem names its secrets its own way."""
    options = {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1", "anon": False, "max_concurrency": 4,
               "headers": {"Authorization": "Bearer tok-123", "X-Trace": "abc"}, "connection_string": "cs-123",
               "credentials": "cred-123", "api_key": "ak-123", "passphrase": "pp-123",
               "client_kwargs": {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1"}}
    assert secrets.masked({"storage_options": options}) == {"storage_options": {
        "endpoint_url": "http://minio:9000", "region_name": "eu-west-1", "anon": False, "max_concurrency": 4,
        "headers": {"Authorization": "***", "X-Trace": "***"}, "connection_string": "***", "credentials": "***",
        "api_key": "***", "passphrase": "***",
        "client_kwargs": {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1"}}}
    assert secrets.plain_secrets({"sources": [{"storage_options": options}]}) == [
        "sources[0].storage_options.headers.Authorization", "sources[0].storage_options.headers.X-Trace",
        "sources[0].storage_options.connection_string", "sources[0].storage_options.credentials",
        "sources[0].storage_options.api_key", "sources[0].storage_options.passphrase"]
    assert secrets.masked({"api_key": "ak-1", "name": "web-en"}) == {"api_key": "***", "name": "web-en"}


def test_urls_are_recorded_without_userinfo_or_query(tmp_path):
    """A presigned URL's signature or a user:password@ never reaches a column, the manifest's config or the
    ledger: the file is read with its URL as given, and recorded without them."""
    import http.server
    import threading

    import pyarrow.parquet as pq

    from tasks.collect import collect_unit, discover
    from tasks.io.layout import RunPaths
    from tasks.io.storage import Store
    from tasks.runs import ledger
    from tasks.text import TEXT, TextSource

    (tmp_path / "data.jsonl").write_text('{"id": "a", "text": "a document about boats"}\n{"id": "b"}\n')
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/data.jsonl?X-Amz-Signature=sig-0123456789&X-Amz-Credential=c"
        sources = [TextSource(uri=url, id_field="id")]
        result = collect_unit(discover(sources, TEXT), sources, TEXT.collect(), TEXT, Store(str(tmp_path / "out")),
                              RunPaths("r"), 0)
    finally:
        server.shutdown()
    plain = f"http://127.0.0.1:{server.server_port}/data.jsonl"
    shard = pq.read_table(tmp_path / "out/runs/r/collect" / result.shards[0]["name"])
    quarantine = pq.read_table(tmp_path / "out/runs/r/collect/_quarantine/part-00000.parquet")
    assert shard["source"].to_pylist() == [plain] and quarantine["source"].to_pylist() == [plain]
    assert [f["uri"] for f in result.files] == [plain] and list(result.first_errors) == [plain]
    store = Store(str(tmp_path / "out"))
    ledger.record(store, "v1", result.files)
    assert pq.read_table(tmp_path / "out/ledger/v1.parquet")["uri"].to_pylist() == [plain]
    assert secrets.masked({"sources": [{"uri": url}], "output": "s3://user:pw@bucket/out"}) == {
        "sources": [{"uri": plain}], "output": "s3://bucket/out"}
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert b"sig-0123456789" not in written
