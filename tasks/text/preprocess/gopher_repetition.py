"""Gopher repetition rules (Rae et al. 2021, table A1), with datatrove's GopherRepetitionFilter thresholds.

Duplicate lines/paragraphs and n-grams are found per document over the whole batch at once: elements get
dense ids (Arrow dictionary encoding), n-grams get exact ids built from (n-1)-gram ids, and "seen earlier
in the same document" is one vectorised pass. Two deliberate refinements over datatrove: the top n-gram
must occur at least twice to count as repetition, and duplicated n-gram characters are the union of the
words they cover (the paper's definition: each character counted once).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.text.preprocess.text import (first_occurrences, flatten, per_doc_sum, ratio, repeated, repeated_ngrams,
                                        split_words, text_lengths, token_ids)
from tasks.records import Check, Settings, split_by_checks


class GopherRepetitionSettings(Settings):
    enabled: bool = True
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
    dup_n_grams: list[tuple[int, float]] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]


def duplicate_elements(texts, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """Per document: fraction of elements (split by `pattern`) seen before, and characters in them."""
    n_docs = len(texts)
    parts, parent = flatten(pc.split_pattern_regex(pc.utf8_trim_whitespace(texts), pattern))
    dup = repeated(parent, token_ids(parts))
    lengths = np.asarray(pc.utf8_length(parts), dtype=np.float64)
    return (ratio(per_doc_sum(parent, dup, n_docs), np.bincount(parent, minlength=n_docs).astype(float)),
            per_doc_sum(parent, lengths * dup, n_docs))


def top_ngram_chars(grams: tuple[np.ndarray, np.ndarray], parent: np.ndarray, cum: np.ndarray, n: int,
                    n_docs: int) -> np.ndarray:
    """Per document: characters covered by its most frequent repeated n-gram (length x count)."""
    pos, ids = grams
    out = np.zeros(n_docs)
    first = first_occurrences(ids)
    if not first.any():
        return out
    counts = np.bincount(ids)[ids[first]]
    starts = pos[first]
    chars = (cum[starts + n] - cum[starts] + (n - 1)) * counts
    docs = parent[starts]
    order = np.lexsort((chars, counts, docs))  # per document, the last is the most frequent (then longest)
    last = np.append(docs[order][1:] != docs[order][:-1], True)
    out[docs[order][last]] = chars[order][last]
    return out


def duplicated_ngram_chars(grams: tuple[np.ndarray, np.ndarray], parent: np.ndarray, cum: np.ndarray, n: int,
                           n_docs: int) -> np.ndarray:
    """Per document: characters of the words covered by an n-gram that already occurred earlier in it. The
    n-grams' spans all have n words and ascend, so each adds its words up to where the next one starts."""
    pos, ids = grams
    starts = pos[~first_occurrences(ids)]
    ends = np.minimum(starts + n, np.append(starts[1:], np.iinfo(np.int64).max))
    return np.bincount(parent[starts], weights=(cum[ends] - cum[starts]).astype(np.float64), minlength=n_docs)


def filter_gopher_repetition(table: pa.Table, settings: GopherRepetitionSettings) -> tuple[pa.Table, pa.Table]:
    s = settings
    texts = table["text"]
    n_docs = table.num_rows
    chars = text_lengths(texts)
    checks = []

    def add(name, limit, value, label):
        if limit is not None:
            checks.append(Check(f"gopher_repetition.{name}", value > limit, value, f"> {limit} ({label})"))

    para_frac, para_chars = duplicate_elements(texts, r"\n{2,}")
    line_frac, line_chars = duplicate_elements(texts, r"\n+")
    add("dup_para_frac", s.dup_para_frac, para_frac, "duplicate paragraphs")
    add("dup_para_char_frac", s.dup_para_char_frac, ratio(para_chars, chars), "characters in duplicate paragraphs")
    add("dup_line_frac", s.dup_line_frac, line_frac, "duplicate lines")
    add("dup_line_char_frac", s.dup_line_char_frac, ratio(line_chars, chars), "characters in duplicate lines")

    sizes = sorted({n for n, _ in s.top_n_grams} | {n for n, _ in s.dup_n_grams})
    if sizes:
        words, parent = split_words(texts)
        cum = np.concatenate([[0], np.cumsum(np.asarray(pc.utf8_length(words), dtype=np.int64))])  # word characters
        grams = repeated_ngrams(token_ids(words), parent, max(sizes))
        for n, limit in s.top_n_grams:
            add(f"top_{n}_gram", limit, ratio(top_ngram_chars(grams[n], parent, cum, n, n_docs), chars),
                f"characters in the top {n}-gram")
        for n, limit in s.dup_n_grams:
            add(f"dup_{n}_gram", limit, ratio(duplicated_ngram_chars(grams[n], parent, cum, n, n_docs), chars),
                f"characters in duplicated {n}-grams")
    return split_by_checks(table, checks)
