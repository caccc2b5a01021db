"""Gopher repetition rules (Rae et al. 2021, table A1), with datatrove's GopherRepetitionFilter thresholds.

Duplicate lines and paragraphs are found over the whole batch at once: they get dense ids (Arrow dictionary
encoding) and "seen earlier in the same document" is one vectorised pass. Duplicate n-grams are found by a
compiled kernel over the texts' bytes: per document, exact word ids, then n-gram ids built from (n-1)-gram
ids, extending only the n-grams that repeat. Two deliberate refinements over datatrove: the top n-gram
must occur at least twice to count as repetition, and duplicated n-gram characters are the union of the
words they cover (the paper's definition: each character counted once).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from tasks.text.preprocess.text import flatten, per_doc_sum, ratio, repeated, text_lengths, token_ids
from tasks.text.preprocess.words import SPACE, next_word
from tasks.text.utf8 import FNV_OFFSET, FNV_PRIME, buffers, fmix64
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


def ngram_chars(texts, max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """(top, dup), (texts x max_n + 1) each: column n holds, per text, the characters in its most frequent
    repeated n-gram (length x count) and the characters of the words covered by an n-gram that already
    occurred earlier in the text (each word counted once)."""
    data, offsets = buffers(texts)
    top, dup = np.zeros((len(texts), max_n + 1)), np.zeros((len(texts), max_n + 1))
    longest = int(np.diff(offsets).max(initial=0))
    _ngram_chars(data, offsets, SPACE, max_n, (longest + 1) // 2, top, dup)
    return top, dup


@njit(cache=True, nogil=True)
def _ngram_chars(data, offsets, space, max_n, max_words, top, dup):
    """Per text: its words, an exact id per distinct word (hash table, bytes compared), then n-grams of
    growing n keyed (id of the (n-1)-gram, id of the last word), extending only the repeated ones."""
    starts, ends = np.empty(max_words, np.int64), np.empty(max_words, np.int64)
    cum = np.zeros(max_words + 1, np.int64)  # characters of the words before each
    ids, word_hash = np.empty(max_words, np.int64), np.empty(max_words, np.uint64)
    word_first, word_count = np.empty(max_words, np.int64), np.empty(max_words, np.int64)
    pos, gram, next_gram = np.empty(max_words, np.int64), np.empty(max_words, np.int64), np.empty(max_words, np.int64)
    gram_first, gram_count = np.empty(max_words, np.int64), np.empty(max_words, np.int64)
    mask = 1
    while mask < 2 * max_words:
        mask *= 2
    word_slots, gram_keys, gram_slots = np.full(mask, -1), np.full(mask, -1), np.empty(mask, np.int64)
    used = np.empty(max_words, np.int64)
    mask -= 1
    for t in range(offsets.shape[0] - 1):
        n_words, at, end = 0, offsets[t], offsets[t + 1]
        while True:
            start, at, chars = next_word(data, at, end, space)
            if start == end:
                break
            starts[n_words], ends[n_words], cum[n_words + 1] = start, at, cum[n_words] + chars
            n_words += 1
        distinct = 0
        for i in range(n_words):
            h = FNV_OFFSET
            for k in range(starts[i], ends[i]):
                h = (h ^ np.uint64(data[k])) * FNV_PRIME
            h = fmix64(h)
            slot = np.int64(h & np.uint64(mask))
            while word_slots[slot] >= 0:
                o = word_slots[slot]
                if word_hash[o] == h and _same_bytes(data, starts[word_first[o]], ends[word_first[o]],
                                                     starts[i], ends[i]):
                    break
                slot = (slot + 1) & mask
            if word_slots[slot] >= 0:
                ids[i] = word_slots[slot]
                word_count[ids[i]] += 1
            else:
                word_slots[slot], word_hash[distinct], word_first[distinct], word_count[distinct] = distinct, h, i, 1
                ids[i], used[distinct] = distinct, slot
                distinct += 1
        for k in range(distinct):
            word_slots[used[k]] = -1
        m = 0
        for i in range(n_words):
            if word_count[ids[i]] >= 2:
                pos[m], gram[m] = i, ids[i]
                m += 1
        for n in range(2, max_n + 1):
            grams, reach, dup_chars = 0, 0, 0
            for j in range(m):
                i, last = pos[j], pos[j] + n - 1
                if last >= n_words or word_count[ids[last]] < 2:
                    next_gram[j] = -1
                    continue
                key = gram[j] * distinct + ids[last]
                slot = np.int64(fmix64(np.uint64(key)) & np.uint64(mask))
                while gram_keys[slot] >= 0 and gram_keys[slot] != key:
                    slot = (slot + 1) & mask
                if gram_keys[slot] == key:  # a repeat: its words count, those of an overlapping repeat once
                    g = gram_slots[slot]
                    gram_count[g] += 1
                    dup_chars += cum[last + 1] - cum[max(i, reach)]
                    reach = last + 1
                else:
                    g = grams
                    gram_keys[slot], gram_slots[slot], gram_first[g], gram_count[g], used[g] = key, g, i, 1, slot
                    grams += 1
                next_gram[j] = g
            best_count, best_chars = 0, 0
            for g in range(grams):
                if gram_count[g] >= 2:
                    chars = (cum[gram_first[g] + n] - cum[gram_first[g]] + n - 1) * gram_count[g]
                    if gram_count[g] > best_count or (gram_count[g] == best_count and chars > best_chars):
                        best_count, best_chars = gram_count[g], chars
            top[t, n], dup[t, n] = best_chars, dup_chars
            kept = 0
            for j in range(m):
                if next_gram[j] >= 0 and gram_count[next_gram[j]] >= 2:
                    pos[kept], gram[kept] = pos[j], next_gram[j]
                    kept += 1
            m = kept
            for g in range(grams):
                gram_keys[used[g]] = -1


@njit(cache=True, nogil=True)
def _same_bytes(data, s1, e1, s2, e2):
    if e1 - s1 != e2 - s2:
        return False
    for k in range(e1 - s1):
        if data[s1 + k] != data[s2 + k]:
            return False
    return True


def filter_gopher_repetition(table: pa.Table, settings: GopherRepetitionSettings) -> tuple[pa.Table, pa.Table]:
    s = settings
    texts = table["text"]
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
        top, dup = ngram_chars(texts, max(sizes))
        for n, limit in s.top_n_grams:
            add(f"top_{n}_gram", limit, ratio(top[:, n], chars), f"characters in the top {n}-gram")
        for n, limit in s.dup_n_grams:
            add(f"dup_{n}_gram", limit, ratio(dup[:, n], chars), f"characters in duplicated {n}-grams")
    return split_by_checks(table, checks)
