"""Every path curate writes under the output root, built here and nowhere else.

    runs/<run_id>/_run.json                          the run's record: host, pid, config, files, status
    runs/<run_id>/<stage>/part-*.parquet             a stage's kept rows
    runs/<run_id>/<stage>/_done/<name>.json          a shard's result, once its outputs are written
    runs/<run_id>/<stage>/_rejected/part-*.parquet   its rejected rows, with rule and reason
    runs/<run_id>/collect/_quarantine/part-*.parquet input that could not become a record
    runs/<run_id>/dedup/_quarantine/part-*.parquet   records whose id an earlier record holds
    runs/<run_id>/dedup/_work/<kind>/...             dedup's intermediate keys, docs, edges and drops
    runs/<run_id>/reports/gates/<gate>...            gate results and Data Docs
    versions/<version>/...                           a published version: shards, card, report, manifest
    index/<version>/...                              the dedup index of a published version
    ledger/<version>.parquet                         the source files a published version took
    LATEST                                           the newest published version's name
    LATEST.lease                                     held by the run comparing and moving LATEST

Paths are tuples of parts for `Store` calls, so they work on any fsspec filesystem. A run id or version
name read back from storage (a run record, LATEST, an index) is a path part: `is_name` says whether it is
one curate could have made, and `Store` refuses any part that leaves the root.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

Parts = tuple[str, ...]
LATEST: Parts = ("LATEST",)
LATEST_LEASE: Parts = ("LATEST.lease",)  # held while a run compares and moves LATEST (tasks.export.publish)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # a version name or run id: never ".", "..", "/" or empty


def is_name(value) -> bool:
    return isinstance(value, str) and re.fullmatch(NAME_PATTERN, value) is not None


@dataclass(frozen=True)
class RunPaths:
    """The folders of one run."""
    run_id: str

    @property
    def root(self) -> Parts:
        return ("runs", self.run_id)

    def stage(self, stage: str, *shard: str) -> Parts:
        return (*self.root, stage, *shard)

    def rejected(self, stage: str, *shard: str) -> Parts:
        return (*self.root, stage, "_rejected", *shard)

    def quarantine(self, stage: str, *shard: str) -> Parts:
        return (*self.root, stage, "_quarantine", *shard)

    def work(self, *parts: str) -> Parts:
        return (*self.root, "dedup", "_work", *parts)

    def gate(self, gate: str, *parts: str) -> Parts:
        return (*self.root, "reports", "gates", gate, *parts)

    def record(self) -> Parts:
        """The run's record (tasks.runs): who runs it, with what, and how it ended."""
        return (*self.root, "_run.json")

    def gate_result(self, gate: str) -> Parts:
        return (*self.root, "reports", "gates", f"{gate}.json")


def version(name: str, *parts: str) -> Parts:
    return ("versions", name, *parts)


def claim(name: str) -> Parts:
    """The file a run holds while it publishes version `name` (outside the version's folder, so a run that
    publishes nothing leaves no version folder behind)."""
    return ("claims", name)


def index(name: str, *parts: str) -> Parts:
    return ("index", name, *parts)


def ledger(name: str | None = None) -> Parts:
    return ("ledger", f"{name}.parquet") if name else ("ledger",)


def published(store) -> set[str]:
    """The versions a manifest commits: only these exist, whatever else (an index, a ledger) is on storage."""
    pattern = store.path(*version("*", "manifest.json"))
    names = {posixpath.basename(posixpath.dirname(p)) for p in store.fs.glob(pattern)}
    return {name for name in names if is_name(name)}
