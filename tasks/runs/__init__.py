"""A run's record on the output storage, and what it makes possible: telling a live run from a dead one,
continuing a failed run (`--resume`), and removing what no published version needs (`curate gc`).

    runs/<run_id>/_run.json              who runs it (host, pid, flow run), its config hash, version and
                                         source files, and how it ended: running, published, failed
    runs/<run_id>/<stage>/_done/<x>.json a shard's (or collect unit's) result, written after its outputs:
                                         a resumed run takes it instead of doing the work again

A running run is alive while its lease holds: the flow's process rewrites `heartbeat` in its record every
HEARTBEAT_S seconds, and a record whose heartbeat is older than LEASE_S is dead wherever it ran. On the
machine that runs it (the same boot and pid namespace, not merely the same hostname, which containers
share) a run is dead at once when its pid is gone or now belongs to a process started at another time.
A dead run's claim is given back by the next run or `curate gc`, and its uncommitted version and index
are removed. Names read back from a record (run id, version) are checked before any path is built of them.

`tasks.runs.ledger` is the record across runs: the source files each published version took, so a recurring
ingest reads only what is new or changed.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from tasks.io import layout
from tasks.io.layout import RunPaths
from tasks.io.storage import Store

HEARTBEAT_S = 10   # how often a live run rewrites its record's heartbeat
LEASE_S = 90       # a record whose heartbeat is older is a dead run's, on any machine
TEMP_GRACE_S = 3600  # `gc` removes a half-written file (*.tmp-*) older than this: no live write takes so long
log = logging.getLogger(__name__)


class CannotResume(Exception):
    """No failed run to continue, or one whose config or sources changed since."""


def machine() -> dict:
    """What tells this process's machine and pid namespace from another's: containers share hostnames and pid
    numbers, not boot ids and namespaces. The process's start time tells a reused pid from ours."""
    def read(path: str) -> str | None:
        try:
            return os.readlink(path) if path.startswith("/proc/self/ns") else open(path).read().strip()
        except OSError:
            return None
    return {"host": socket.gethostname(), "boot_id": read("/proc/sys/kernel/random/boot_id"),
            "pid_ns": read("/proc/self/ns/pid"), "pid": os.getpid(), "pid_started": started_at(os.getpid())}


def started_at(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, /proc/<pid>/stat field 22); None if none runs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def begin(store: Store, paths: RunPaths, flow_run_id: str | None, config_hash: str, version: str,
          files: list[dict]) -> dict:
    record = {"run_id": paths.run_id, "status": "running", **machine(), "flow_run_id": flow_run_id,
              "config_hash": config_hash, "version": version, "started": now(), "heartbeat": now(),
              "lease_s": LEASE_S, "files": files}
    store.write_json(record, *paths.record())
    return record


@contextmanager
def heartbeat(store: Store, record: dict):
    """Renew the run's lease for the block: a thread rewrites the record's heartbeat every HEARTBEAT_S."""
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            try:
                store.write_json(record | {"heartbeat": now()}, *RunPaths(record["run_id"]).record())
            except Exception as e:  # noqa: BLE001 -- a missed beat is retried; the lease allows several
                log.warning("run %s: heartbeat not written (%s)", record["run_id"], e)
    thread = threading.Thread(target=beat, name="curate-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def end(store: Store, record: dict, status: str, message: str = "") -> None:
    store.write_json(record | {"status": status, "message": message,
                               "ended": datetime.now(timezone.utc).isoformat()}, *RunPaths(record["run_id"]).record())


def records(store: Store) -> list[dict]:
    """Every run's record, oldest first; a record whose run id or version is no name curate makes (".." would
    make a path outside the output) is left alone, with a warning."""
    found = []
    for path, record in store.read_jsons(*RunPaths("*").record()).items():
        if isinstance(record, dict) and layout.is_name(record.get("run_id")) and layout.is_name(record.get("version")):
            found.append(record)
        else:
            log.warning("%s is no run record curate wrote (its run_id or version is not a name): ignored", path)
    return sorted(found, key=lambda r: str(r.get("started")))


def alive(record: dict) -> bool:
    """Whether the run may still be working: on its own machine, while its process runs; elsewhere, while its
    heartbeat is younger than its lease."""
    if record["status"] != "running":
        return False
    here = machine()
    if record.get("boot_id") and (record.get("host"), record.get("boot_id"), record.get("pid_ns")) == \
            (here["host"], here["boot_id"], here["pid_ns"]):
        return started_at(record["pid"]) == record.get("pid_started")
    beat = record.get("heartbeat")
    if not beat:  # a record from before leases: another host's run counts as alive
        return True
    age = datetime.now(timezone.utc) - datetime.fromisoformat(beat)
    return age.total_seconds() < record.get("lease_s", LEASE_S)


def file_identity(files) -> list[dict]:
    """What a resumed run compares to know its sources are the ones the failed run read."""
    return [{"uri": f.url, "size": f.size, "stamp": f.stamp} for f in files]


def to_resume(store: Store, run_id: str | None, config_hash: str, files: list[dict]) -> dict:
    """The record of the run to continue: `run_id`, or the last failed or killed run with this config."""
    failed = [r for r in records(store) if r["status"] in ("failed", "crashed") or
              (r["status"] == "running" and not alive(r))]
    if run_id:
        record = next((r for r in failed if r["run_id"] == run_id), None)
        if record is None:
            raise CannotResume(f"run {run_id} is not a failed or killed run under {store.root}")
    else:
        mine = [r for r in failed if r["config_hash"] == config_hash]
        if not mine:
            raise CannotResume(f"no failed or killed run with this config under {store.root} to resume")
        record = mine[-1]
    if record["config_hash"] != config_hash:
        raise CannotResume(f"run {record['run_id']} ran with another config (hash {record['config_hash'][:12]}); "
                           "its work does not apply: start a new run")
    if record["files"] != files:
        changed = len({json.dumps(f, sort_keys=True) for f in files}
                      ^ {json.dumps(f, sort_keys=True) for f in record["files"]})
        raise CannotResume(f"the sources changed since run {record['run_id']} ({changed} files added, removed or "
                           "modified): its work does not apply: start a new run")
    return record


def mark_done(store: Store, paths: RunPaths, stage: str, name: str, result: dict) -> None:
    store.write_json(result, *paths.stage(stage, "_done", f"{name}.json"))


def completed(store: Store, paths: RunPaths, stage: str) -> dict[str, dict]:
    """{name: result} of the stage's shards (or units) whose outputs are all written."""
    return {posixpath.basename(path).removesuffix(".json"): result
            for path, result in store.read_jsons(*paths.stage(stage, "_done", "*.json")).items()}


def release_dead(store: Store) -> list[dict]:
    """Give back what killed runs held: their claims, uncommitted version folders and dedup indexes. Their
    run folders stay, for `--resume`. Returns their records, now marked `crashed`."""
    dead = [r for r in records(store) if r["status"] == "running" and not alive(r)]
    for record in dead:
        remove_uncommitted(store, record["version"])
        claim = layout.claim(record["version"])
        if store.exists(*claim) and store.read_bytes(*claim).decode().strip() == record["run_id"]:
            store.remove(*claim)
        end(store, record, "crashed", f"process {record['pid']} on {record['host']} ended without finishing the run "
                                      f"(its last heartbeat: {record.get('heartbeat', 'none')})")
    return dead


def remove_uncommitted(store: Store, version: str) -> None:
    """Remove the version's folder, index and ledger unless its manifest commits them."""
    if not store.exists(*layout.version(version, "manifest.json")):
        for parts in (layout.version(version), layout.index(version), layout.ledger(version)):
            store.remove(*parts)


def garbage(store: Store) -> list[layout.Parts]:
    """What `curate gc` removes: folders of failed or killed runs that no published version names, version
    and index folders no manifest commits and no live run is writing, claims dead runs left, and half-written
    files (`*.tmp-*`) older than TEMP_GRACE_S."""
    every = records(store)
    live = {r["version"] for r in every if alive(r)}
    dead = {r["run_id"] for r in every if not alive(r)}
    published = {m["run_id"] for m in store.read_jsons(*layout.version("*", "manifest.json")).values()}
    committed = layout.published(store)
    found = [RunPaths(r["run_id"]).root for r in every if r["run_id"] in dead - published]
    for kind in ("versions", "index"):
        for path in sorted(store.fs.glob(posixpath.join(store.path(kind), "*"))):
            name = posixpath.basename(path)
            if layout.is_name(name) and name not in live and name not in committed:
                found.append((kind, name))
    for path in sorted(store.fs.glob(store.path(*layout.claim("*")))):
        if store.fs.cat_file(path).decode().strip() in dead:
            found.append(layout.claim(posixpath.basename(path)))
    root = store.path().rstrip("/")
    for path, info in sorted(store.fs.glob(f"{root}/**/*.tmp-*", detail=True).items()):
        if time.time() - modified(info) > TEMP_GRACE_S:
            found.append(tuple(posixpath.relpath(path, root).split("/")))
    return found


def modified(info: dict) -> float:
    """A listing entry's modification time in seconds since the epoch (local disks and object stores)."""
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)
