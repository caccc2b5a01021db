"""A run's record on the output storage, and what it makes possible: telling a live run from a dead one,
continuing a failed run (`--resume`), and removing what no published version needs (`curate gc`).

    runs/<run_id>/_run.json              who runs it (host, pid, flow run), its config hash, version and
                                         source files, and how it ended: running, published, failed
    runs/<run_id>/<stage>/_done/<x>.json a shard's (or collect unit's) result, written after its outputs:
                                         a resumed run takes it instead of doing the work again

A run whose record says `running` but whose process is gone (same host, no such pid) was killed: the next
run or `curate gc` gives back its claim and removes its uncommitted version and index.

`tasks.runs.ledger` is the record across runs: the source files each published version took, so a recurring
ingest reads only what is new or changed.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
from datetime import datetime, timezone

from tasks.io import layout
from tasks.io.layout import RunPaths
from tasks.io.storage import Store


class CannotResume(Exception):
    """No failed run to continue, or one whose config or sources changed since."""


def begin(store: Store, paths: RunPaths, flow_run_id: str | None, config_hash: str, version: str,
          files: list[dict]) -> dict:
    record = {"run_id": paths.run_id, "status": "running", "host": socket.gethostname(), "pid": os.getpid(),
              "flow_run_id": flow_run_id, "config_hash": config_hash, "version": version,
              "started": datetime.now(timezone.utc).isoformat(), "files": files}
    store.write_json(record, *paths.record())
    return record


def end(store: Store, record: dict, status: str, message: str = "") -> None:
    store.write_json(record | {"status": status, "message": message,
                               "ended": datetime.now(timezone.utc).isoformat()}, *RunPaths(record["run_id"]).record())


def records(store: Store) -> list[dict]:
    """Every run's record, oldest first."""
    return sorted(store.read_jsons(*RunPaths("*").record()).values(), key=lambda r: r["started"])


def alive(record: dict) -> bool:
    """Whether the run may still be working: a run of another host counts as alive (its pid means nothing here)."""
    if record["status"] != "running":
        return False
    if record["host"] != socket.gethostname():
        return True
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        end(store, record, "crashed", f"process {record['pid']} on {record['host']} ended without finishing the run")
    return dead


def remove_uncommitted(store: Store, version: str) -> None:
    """Remove the version's folder unless its manifest commits it, and its index unless index.json does."""
    if not store.exists(*layout.version(version, "manifest.json")):
        store.remove(*layout.version(version))
    if not store.exists(*layout.index(version, "index.json")):
        store.remove(*layout.index(version))


def garbage(store: Store) -> list[layout.Parts]:
    """What `curate gc` removes: folders of failed or killed runs that no published version names, version
    and index folders nothing commits and no live run is writing, and claims dead runs left."""
    every = records(store)
    live = {r["version"] for r in every if alive(r)}
    dead = {r["run_id"] for r in every if not alive(r)}
    published = {m["run_id"] for m in store.read_jsons(*layout.version("*", "manifest.json")).values()}
    found = [RunPaths(r["run_id"]).root for r in every if r["run_id"] in dead - published]
    for kind, marker in (("versions", "manifest.json"), ("index", "index.json")):
        for path in sorted(store.fs.glob(posixpath.join(store.path(kind), "*"))):
            name = posixpath.basename(path)
            if name not in live and not store.exists(kind, name, marker):
                found.append((kind, name))
    for path in sorted(store.fs.glob(store.path(*layout.claim("*")))):
        if store.fs.cat_file(path).decode().strip() in dead:
            found.append(layout.claim(posixpath.basename(path)))
    return found
