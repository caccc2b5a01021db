"""What the manifest, card and report show of a text dataset: documents per language and per length bin."""

from __future__ import annotations

from collections import Counter
from html import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.export import load_snippet
from tasks.export.report import bar_chart
from tasks.text import tokens

LENGTH_EDGES = (0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)  # characters per document
LENGTH_BINS = tuple(f"{lo:,}-{hi:,}" for lo, hi in zip(LENGTH_EDGES, LENGTH_EDGES[1:])) + (f">={LENGTH_EDGES[-1]:,}",)


def length_bins(texts: pa.ChunkedArray) -> Counter:
    """Documents per length bin (LENGTH_BINS), by characters."""
    at = np.searchsorted(LENGTH_EDGES, np.asarray(pc.utf8_length(texts), dtype=np.int64), side="right") - 1
    return Counter({LENGTH_BINS[i]: int(n) for i, n in enumerate(np.bincount(at, minlength=len(LENGTH_BINS))) if n})


def of_table(table: pa.Table) -> dict:
    languages = Counter(table["lang"].to_pylist()) if "lang" in table.column_names else Counter()
    stats = {"languages": dict(languages), "lengths": dict(length_bins(table["text"]))}
    if tokens.N_TOKENS in table.column_names:
        stats["token_lengths"] = tokens.length_bins(table[tokens.N_TOKENS])
    return stats


def languages(manifest: dict) -> list[tuple[str, int]]:
    return Counter(manifest.get("languages", {})).most_common()


def charts(manifest: dict) -> list[str]:
    lengths, token_lengths = manifest.get("lengths", {}), manifest.get("token_lengths", {})
    figures = [bar_chart("Document length in characters (this version)",
                         [(b, lengths[b]) for b in LENGTH_BINS if lengths.get(b)], "#4c78a8"),
               bar_chart("Documents per language (this version)", languages(manifest)[:20], "#59a14f")]
    if token_lengths:
        figures.append(bar_chart("Document length in tokens (this version)",
                                 [(b, token_lengths[b]) for b in tokens.LENGTH_BINS if token_lengths.get(b)], "#f28e2b"))
    return figures


def card(manifest: dict) -> str:
    rows = "\n".join(f"| {lang} | {n} |" for lang, n in languages(manifest)[:20])
    loader = 'train = ds.dataset(files, format="parquet")  # or datasets.load_dataset("parquet", data_files=files)'
    return (f"## Languages (top 20)\n| language | documents |\n|---|---|\n{rows}\n\n"
            f"## Load it\n{load_snippet(manifest, 'import pyarrow.dataset as ds' + chr(10) + loader)}\n"
            + quality_card(manifest) + semantic_card(manifest) + tokens_card(manifest))


def quality_card(manifest: dict) -> str:
    """The learned quality classifier: which model, trained on what, how well it did on held-out documents."""
    model = manifest.get("quality_classifier")
    if not model:
        return ""
    held = model.get("held_out")
    figures = (f"On {held['positive']:,} held-out good and {held['negative']:,} held-out bad documents: precision "
               f"{held['precision']}, recall {held['recall']}, accuracy {held['accuracy']}.\n" if held else "")
    return (f"\n## Quality classifier\nEvery document has `quality_score`, the probability that it is good, from "
            f"`{model['file']}` in this folder (sha256 `{model['sha256']}`, {model['origin']}).\n{figures}")


def semantic_card(manifest: dict) -> str:
    """Semantic dedup: what embedded the documents and how many it removed."""
    found = manifest.get("dedup", {}).get("semantic")
    if not found:
        return ""
    embedder = (f"the fastText model of sha256 `{found['embedder'].removeprefix('fasttext:')}`"
                if found["embedder"].startswith("fasttext:") else
                f"latent semantic analysis fitted in version `{found['embedder']}`")
    against = f", and against {found['published']:,} published documents" if found["published"] else ""
    return (f"\n## Semantic dedup\n{found['removed']:,} of {found['documents']:,} documents were removed as "
            f"rewordings of others (rule `dedup.semantic`), compared within {found['clusters']:,} k-means clusters"
            f"{against}; the embedding ({found['dims']} dimensions) is {embedder}.\n")


def tokens_card(manifest: dict) -> str:
    """The token shards: how many tokens, of what length, from which tokenizer, and how to read them."""
    tokenizer = manifest.get("tokenizer")
    if not tokenizer:
        return ""
    splits = "\n".join(f"| {name} | {s.get('tokens', 0):,} |" for name, s in manifest["splits"].items())
    bins = manifest.get("token_lengths", {})
    lengths = "\n".join(f"| {b} | {bins[b]:,} |" for b in tokens.LENGTH_BINS if bins.get(b))
    return f"""
## Tokens
Tokenizer `{tokenizer['file']}` in this folder (sha256 `{tokenizer['sha256']}`, {tokenizer['origin']}):
{tokenizer['vocab_size']:,} tokens, end of document `{tokenizer['eos']}` (id {tokenizer['eos_id']}). Each Parquet
shard has beside it `<shard>.tokens.npy`, its documents' token ids ({tokenizer['dtype']}) one after another, each
followed by the end token, and `<shard>.offsets.npy`, where each document starts (int64, one more than the rows).
Row i of the shard is document i; its `n_tokens` column counts the tokens without the end token. Documents
are in a seeded order.

| split | tokens (end tokens included) |
|---|---|
{splits}

| tokens per document | documents |
|---|---|
{lengths}

```python
import numpy as np  # `versions` and `manifest` as above; NumPy maps files of a local folder
for shard in manifest["splits"]["train"]["shards"]:
    tokens = np.load(posixpath.join(versions, shard["version"], shard["tokens"]), mmap_mode="r")
    offsets = np.load(posixpath.join(versions, shard["version"], shard["offsets"]))
    first_document = tokens[offsets[0]:offsets[1]]
```
"""


def example(row: dict) -> str:
    text = row.get("text") or ""
    return f"<blockquote>{escape(text[:300])}{'…' if len(text) > 300 else ''}</blockquote>"
