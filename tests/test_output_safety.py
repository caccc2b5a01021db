"""The output root is curate's and nothing outside it is: no name read back from storage deletes or writes
outside it, two runs never fork the history, a dead run is told from a live one by its lease, and commit
files reach the disk before they name what they commit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from conftest import CURATE, E2E, ROOT, e2e_config
from flows.config import ConfigError, load_config
from tasks import export, runs
from tasks.io import layout
from tasks.io.layout import RunPaths
from tasks.io.storage import Store, UnsafePath


def published_output(store: Store) -> None:
    """An output with a published version v1 and the files a real one has."""
    store.write_json({"version": "v1", "run_id": "r1"}, *layout.version("v1", "manifest.json"))
    store.write_bytes(b"v1\n", *layout.LATEST)
    store.write_bytes(b"rows", *layout.version("v1", "train", "part-00000.parquet"))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("version", ["..", "/tmp", "../..", "v1/../.."])
def test_a_run_record_naming_a_path_outside_the_output_deletes_nothing(tmp_path, version):
    """Before: a record with version ".." and a dead pid made release_dead (which every run calls) remove the
    whole output root, published versions included."""
    store = Store(str(tmp_path / "out"))
    published_output(store)
    (tmp_path / "keep.txt").write_text("outside the output")
    store.write_json({"run_id": "evil", "status": "running", "host": socket.gethostname(), "pid": dead_pid(),
                      "version": version, "started": "2026-01-01T00:00:00+00:00", "files": []},
                     *RunPaths("evil").record())
    assert runs.release_dead(store) == []
    assert store.exists(*layout.version("v1", "train", "part-00000.parquet")) and (tmp_path / "keep.txt").exists()
    assert runs.garbage(store) == []


def test_no_path_part_leaves_the_root(tmp_path):
    store = Store(str(tmp_path / "out"))
    for parts in [("versions", ".."), ("/etc",), ("versions", "a/../../b"), ("s3://other-bucket/x",), (".",)]:
        with pytest.raises(UnsafePath, match="would leave the output root"):
            store.remove(*parts)
    store.write_bytes(b"x", *layout.version("v1.2-rc_1", "README.md"))  # dots inside a name are fine
    assert store.exists("versions", "v1.2-rc_1", "README.md")


def test_a_config_cannot_name_a_version_that_is_a_path(tmp_path):
    for bad in ("..", ".", "../x", ".hidden", "a/b", ""):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"sources": [{"uri": "x.jsonl"}], "output": "out",
                                        "export": {"version": bad}}))
        with pytest.raises(ConfigError, match="export.version"):
            load_config(path)


def test_latest_naming_no_version_stops_the_run_before_it_reads_a_path(tmp_path):
    store = Store(str(tmp_path / "out"))
    store.write_bytes(b"../../etc\n", *layout.LATEST)
    with pytest.raises(export.VersionConflict, match="holds '../../etc', which is no version name"):
        export.latest_manifest(store)


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "out"))
    fs, options = request.getfixturevalue("s3")
    return Store("s3://curate/out", options)


def test_two_runs_that_started_from_one_latest_cannot_both_publish(output):
    """Both runs began when LATEST named v1; the first to publish wins, the second fails and publishes nothing,
    so LATEST never moves back and no version silently drops another's documents (local disk and S3)."""
    published_output(output)
    export.publish(output, "v2", {"version": "v2"}, "card", "<html>", "v1", "run-a")
    with pytest.raises(export.VersionConflict, match=r"^LATEST moved from v1 to v2 while this run ran \(another run "
                                                      r"published first\); nothing of this run was published"):
        export.publish(output, "v3", {"version": "v3"}, "card", "<html>", "v1", "run-b")
    assert export.latest_version(output) == "v2"
    assert not output.exists(*layout.version("v3", "manifest.json")) and not output.exists(*layout.LATEST_LEASE)
    runs.remove_uncommitted(output, "v3")
    assert not output.exists(*layout.version("v3"))


def test_a_publish_waits_for_the_lease_and_breaks_an_expired_one(output):
    published_output(output)
    output.create_exclusive(json.dumps({"holder": "dead-run", "expires": time.time() - 1}).encode(),
                            *layout.LATEST_LEASE)
    export.publish(output, "v2", {"version": "v2"}, "card", "<html>", "v1", "run-a")
    assert export.latest_version(output) == "v2"
    output.create_exclusive(json.dumps({"holder": "live-run", "expires": time.time() + 60}).encode(),
                            *layout.LATEST_LEASE)
    export.LEASE_WAIT_S, wait = 0.5, export.LEASE_WAIT_S
    try:
        with pytest.raises(export.VersionConflict, match="run live-run has been publishing to"):
            export.publish(output, "v3", {"version": "v3"}, "card", "<html>", "v2", "run-b")
    finally:
        export.LEASE_WAIT_S = wait
    assert export.latest_version(output) == "v2"


def test_an_index_or_ledger_without_its_manifest_does_not_count(tmp_path):
    """Index and ledger are written before the manifest, which commits them: a run that lost the race to
    publish leaves neither documents to dedup against nor files counted as ingested."""
    from tasks.dedup import index
    from tasks.runs import ledger
    from tasks.text.dedup import TextDedupSettings

    store = Store(str(tmp_path / "out"))
    published_output(store)
    for version in ("v1", "lost"):
        index.commit(store, version, ["part-00000.parquet"], 3, TextDedupSettings())
        ledger.record(store, version, [{"uri": f"{version}.jsonl", "bytes": 1, "stamp": "s", "sha256": "h",
                                        "records": 3, "quarantined": 0}])
    assert [v["version"] for v in index.committed(store)] == ["v1"]
    assert ledger.read(store)["uri"].to_pylist() == ["v1.jsonl"]
    runs.remove_uncommitted(store, "lost")
    assert not store.exists(*layout.index("lost")) and not store.exists(*layout.ledger("lost"))


def record(**fields) -> dict:
    return {"run_id": "r", "version": "v", "status": "running", "started": "2026-01-01T00:00:00+00:00"} | fields


def test_liveness_is_a_lease_not_a_hostname_and_pid():
    """Containers share hostnames and pid numbers: a record of another machine (boot id or pid namespace) is
    alive while its heartbeat is fresh, whatever pid it names; on this machine a reused pid is not the run."""
    here = runs.machine()
    fresh = datetime.now(timezone.utc).isoformat()
    stale = (datetime.now(timezone.utc) - timedelta(seconds=runs.LEASE_S + 5)).isoformat()
    other = here | {"pid_ns": "pid:[1]"}  # same hostname and pid, another container
    assert runs.alive(record(**other, heartbeat=fresh))
    assert not runs.alive(record(**other, heartbeat=stale))
    assert runs.alive(record(**here, heartbeat=stale))  # our own process: alive whatever its heartbeat
    assert not runs.alive(record(**here | {"pid_started": "1"}, heartbeat=fresh))  # our pid, another process
    assert not runs.alive(record(**here | {"pid": dead_pid()}, heartbeat=fresh))


def test_a_running_run_renews_its_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "HEARTBEAT_S", 0.05)
    store = Store(str(tmp_path / "out"))
    begun = runs.begin(store, RunPaths("r1"), None, "hash", "v1", [])
    with runs.heartbeat(store, begun):
        time.sleep(0.3)
    assert store.read_json(*RunPaths("r1").record())["heartbeat"] > begun["heartbeat"]


def test_commit_files_are_fsynced_with_their_folder(tmp_path, monkeypatch):
    """A power cut cannot be made here, so os.fsync is watched: the manifest and LATEST (and their folders) are
    synced, a shard is not."""
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    store = Store(str(tmp_path / "out"))
    store.write_bytes(b"rows", "runs", "r", "collect", "part-00000.parquet")
    assert synced == []
    export.publish(store, "v1", {"version": "v1"}, "card", "<html>", None, "r")
    out = str(tmp_path / "out")
    assert [p.rsplit(".tmp-", 1)[0] for p in synced] == [f"{out}/versions/v1/manifest.json", f"{out}/versions/v1",
                                                          f"{out}/LATEST", out]


def test_gc_removes_half_written_files_older_than_any_write(tmp_path):
    store = Store(str(tmp_path / "out"))
    published_output(store)
    old, new = tmp_path / "out/versions/v1/manifest.json.tmp-0000dead", tmp_path / "out/LATEST.tmp-0000live"
    old.write_text("{")
    new.write_text("v")
    os.utime(old, (time.time() - runs.TEMP_GRACE_S - 60,) * 2)
    assert runs.garbage(store) == [("versions", "v1", "manifest.json.tmp-0000dead")]


def test_two_incremental_runs_started_together_lose_nothing(tmp_path, prefect_server):
    """Two `curate run`s of one incremental config at once: whichever publishes second finds LATEST moved and
    fails saying so (or, if it started after the first published, finds nothing new); the published history
    holds every document once and the ledger counts each file once."""
    config = e2e_config(str(E2E / "*.jsonl*"), str(tmp_path / "out"), incremental=True,
                        gates={"raw": "off", "clean": "off", "dedup": "off", "export": "off"})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PREFECT_API_URL": f"{prefect_server[0]}/api", "PREFECT_HOME": str(prefect_server[1])}
    both = [subprocess.Popen([*CURATE, "run", str(path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in both]
    codes = sorted(p.returncode for p in both)
    store = Store(str(tmp_path / "out"))
    versions = sorted(layout.published(store))
    assert len(versions) == 1, outputs
    lost = [o for p, o in zip(both, outputs) if p.returncode]
    assert codes == [0, 0] and sum("nothing new" in o for o in outputs) == 1 or \
        codes[0] == 0 and len(lost) == 1 and "LATEST moved from nothing to " in lost[0], outputs
    from tasks.runs import ledger
    uris = ledger.read(store)["uri"].to_pylist()
    assert sorted(uris) == sorted(set(uris)) and len(uris) == len(list(E2E.glob("*.jsonl*")))
    assert not store.exists(*layout.LATEST_LEASE)
