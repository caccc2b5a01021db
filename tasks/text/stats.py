"""What the manifest, card and report show of a text dataset: documents per language and per length bin."""

from __future__ import annotations

from collections import Counter
from html import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.export import load_snippet
from tasks.report import bar_chart

LENGTH_EDGES = (0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)  # characters per document
LENGTH_BINS = tuple(f"{lo:,}-{hi:,}" for lo, hi in zip(LENGTH_EDGES, LENGTH_EDGES[1:])) + (f">={LENGTH_EDGES[-1]:,}",)


def length_bins(texts: pa.ChunkedArray) -> Counter:
    """Documents per length bin (LENGTH_BINS), by characters."""
    at = np.searchsorted(LENGTH_EDGES, np.asarray(pc.utf8_length(texts), dtype=np.int64), side="right") - 1
    return Counter({LENGTH_BINS[i]: int(n) for i, n in enumerate(np.bincount(at, minlength=len(LENGTH_BINS))) if n})


def of_table(table: pa.Table) -> dict:
    languages = Counter(table["lang"].to_pylist()) if "lang" in table.column_names else Counter()
    return {"languages": dict(languages), "lengths": dict(length_bins(table["text"]))}


def languages(manifest: dict) -> list[tuple[str, int]]:
    return Counter(manifest.get("languages", {})).most_common()


def charts(manifest: dict) -> list[str]:
    lengths = manifest.get("lengths", {})
    return [bar_chart("Document length in characters (this version)",
                      [(b, lengths[b]) for b in LENGTH_BINS if lengths.get(b)], "#4c78a8"),
            bar_chart("Documents per language (this version)", languages(manifest)[:20], "#59a14f")]


def card(manifest: dict) -> str:
    rows = "\n".join(f"| {lang} | {n} |" for lang, n in languages(manifest)[:20])
    loader = 'train = ds.dataset(files, format="parquet")  # or datasets.load_dataset("parquet", data_files=files)'
    return (f"## Languages (top 20)\n| language | documents |\n|---|---|\n{rows}\n\n"
            f"## Load it\n{load_snippet(manifest, 'import pyarrow.dataset as ds' + chr(10) + loader)}")


def example(row: dict) -> str:
    text = row.get("text") or ""
    return f"<blockquote>{escape(text[:300])}{'…' if len(text) > 300 else ''}</blockquote>"
