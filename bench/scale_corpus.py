"""A text corpus of any size, written as JSONL files as it is generated, with its planted near-duplicates.

Every document is a function of its number alone, so a million of them are written file by file (two
processes) without ever being held together, and a planted copy can regenerate its original:
- the first documents are windows of whole lines, about `words` words each, of ../shared/data's real text
  (line breaks kept, so line-based rules such as C4's see real lines);
- later ones are variants of a window: one word in eight replaced by another word of the same window (its
  language stays), so their word 5-gram Jaccard to any other variant is about 0.3: new documents for dedup;
- `near_dup` of all documents (but the first) are planted near copies of a random earlier document: one
  word in a hundred replaced (Jaccard about 0.9). `planted.jsonl` beside the files lists them (id, of).
"""

from __future__ import annotations

import gzip
import json
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from bench.corpus import SAMPLE

SEED = 20261205
VARIANT_RATE, NEAR_RATE = 1 / 8, 1 / 100


def line_windows(words: int) -> list[list[str]]:
    """The sample's documents cut into runs of whole lines of about `words` words, as space-separated tokens
    (a token may hold a line break: joined with spaces they give the text back)."""
    out = []
    for row in gzip.open(SAMPLE, "rt", encoding="utf-8"):
        window, count = [], 0
        for line in json.loads(row)["text"].splitlines():
            window.append(line)
            count += len(line.split())
            if count >= words:
                out.append("\n".join(window).split(" "))
                window, count = [], 0
        if count >= words // 4 or not out:
            out.append("\n".join(window).split(" "))
    return out


class Generator:
    def __init__(self, words: int, near_dup: float):
        self.base = line_windows(words)
        self.near_dup = near_dup

    def origin(self, i: int) -> int | None:
        """The earlier document that document `i` is a planted near copy of, or None."""
        if i == 0:
            return None
        rng = np.random.default_rng([SEED, i, 0])
        return int(rng.integers(i)) if rng.random() < self.near_dup else None

    def tokens(self, i: int) -> list[str]:
        of = self.origin(i)
        if of is not None:
            return perturbed(self.tokens(of), NEAR_RATE, np.random.default_rng([SEED, i, 1]))
        window = self.base[i % len(self.base)]
        return window if i < len(self.base) else perturbed(window, VARIANT_RATE, np.random.default_rng([SEED, i, 2]))


def perturbed(tokens: list[str], rate: float, rng: np.random.Generator) -> list[str]:
    """`tokens` with a share `rate` of them replaced by other tokens of the same list."""
    hit = np.flatnonzero(rng.random(len(tokens)) < rate)
    if not len(hit):
        return tokens
    out = list(tokens)
    for at, source in zip(hit.tolist(), rng.integers(len(tokens), size=len(hit)).tolist()):
        out[at] = tokens[source]
    return out


def doc_id(i: int) -> str:
    return f"d{i:08d}"


def write_file(args: tuple) -> tuple[int, list[tuple[str, str]]]:
    """One JSONL file of documents `start`..`stop`; returns its size and its planted (id, of) pairs."""
    path, start, stop, words, near_dup = args
    gen = Generator(words, near_dup)
    planted = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(start, stop):
            of = gen.origin(i)
            if of is not None:
                planted.append((doc_id(i), doc_id(of)))
            f.write(json.dumps({"id": doc_id(i), "text": " ".join(gen.tokens(i))}, ensure_ascii=False) + "\n")
    return Path(path).stat().st_size, planted


def write_corpus(folder: Path, docs: int, files: int, words: int = 700, near_dup: float = 0.1,
                 processes: int = 2) -> dict:
    """`docs` documents in `files` JSONL files under `folder/docs/`, planted pairs in `folder/planted.jsonl`;
    kept as they are when `folder/corpus.json` says they were made with the same arguments."""
    spec = {"docs": docs, "files": files, "words": words, "near_dup": near_dup, "seed": SEED}
    done = folder / "corpus.json"
    if done.exists() and json.loads(done.read_text()).get("spec") == spec:
        return json.loads(done.read_text())
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    for old in (folder / "docs").glob("*.jsonl"):
        old.unlink()
    bounds = [docs * k // files for k in range(files + 1)]
    jobs = [(str(folder / "docs" / f"part-{k:04d}.jsonl"), bounds[k], bounds[k + 1], words, near_dup)
            for k in range(files)]
    with get_context("spawn").Pool(processes) as pool:
        results = pool.map(write_file, jobs)
    with open(folder / "planted.jsonl", "w") as f:
        for _, pairs in results:
            for pair_id, of in pairs:
                f.write(json.dumps({"id": pair_id, "of": of}) + "\n")
    info = {"spec": spec, "bytes": sum(size for size, _ in results), "planted": sum(len(p) for _, p in results)}
    done.write_text(json.dumps(info))
    return info
