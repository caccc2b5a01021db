"""What the media throughput benchmarks share: the shared files as collect makes them, a timer and a
per-step profile."""

from __future__ import annotations

import cProfile
import pstats
import time
from pathlib import Path

import pyarrow as pa

from tasks.io.readers import WHOLE_FILE
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


def profile(step, rounds: int, functions: list) -> None:
    """Print the seconds per round spent in each of `functions` (cumulative, by cProfile) while `step` runs."""
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [step() for _ in range(rounds)])
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, calls, own time, cumulative time, callers)
    codes = {(f.__code__.co_filename, f.__code__.co_firstlineno, f.__name__): f for f in functions}
    total = sum(entry[2] for entry in stats.values())
    print(f"profile, seconds per round (cProfile's own overhead included: {total / rounds:.2f} s in all)")
    for key, function in codes.items():
        calls, _, _, cumulative, _ = stats.get(key, (0, 0, 0, 0.0, {}))
        name = f"{function.__module__}.{function.__qualname__}"
        print(f"  {name:<48}{cumulative / rounds:8.3f} s  {calls // rounds:>5} calls")
    print("  the most time of its own:")
    for (file, _, name), entry in sorted(stats.items(), key=lambda item: -item[1][2])[:8]:
        print(f"  {name[:40] + ' ' + Path(file).name:<48}{entry[2] / rounds:8.3f} s  {entry[0] // rounds:>5} calls")
