"""What the media throughput benchmarks share: the shared files as collect makes them, and a timer."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from tasks.collect import WHOLE_FILE
from tasks.modality import Modality

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def records(modality: Modality, folder: Path) -> pa.Table:
    """Every file of `folder` read whole as `modality`'s collect reads it, the undecodable left out."""
    rows = []
    for i, path in enumerate(sorted(folder.iterdir())):
        payload = modality.to_payload({WHOLE_FILE: {"bytes": path.read_bytes(), "path": str(path)}},
                                      modality.source(uri=str(path)), str(path), modality.collect())
        if isinstance(payload, tuple):
            rows.append({"id": f"r{i}", "source": str(path), "source_index": 0, "meta": "{}", **payload[0]})
    return pa.Table.from_pylist(rows, schema=modality.schema)


def timed(step, rounds: int) -> float:
    """Mean wall seconds of `step` over `rounds` calls."""
    started = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - started) / rounds
