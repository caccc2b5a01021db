"""Gopher repetition rules (Rae et al. 2021, table A1), with datatrove's GopherRepetitionFilter thresholds.

Compiled kernels walk the texts' bytes: per document, an exact hash table (bytes compared) finds the lines,
paragraphs and words seen before in it, and n-gram ids are built from (n-1)-gram ids, extending only the
n-grams that repeat. Two deliberate refinements over datatrove: the top n-gram must occur at least twice
to count as repetition, and duplicated n-gram characters are the union of the words they cover (the
paper's definition: each character counted once).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

from tasks.text.preprocess.text import ratio, text_lengths
from tasks.text.preprocess.words import SPACE, next_word, trimmed
from tasks.text.utf8 import buffers, fmix64, hash_bytes, same_bytes
from pydantic import Field

from tasks.records import Check, Settings, split_by_checks


class GopherRepetitionSettings(Settings):
    """Gopher's repetition rules (as datatrove's GopherRepetitionFilter); null turns one rule off."""
    enabled: bool = Field(True, description="apply the Gopher repetition rules")
    dup_line_frac: float | None = Field(0.3, ge=0, le=1, description="reject documents with a larger share of "
                                                                     "lines seen earlier in them")
    dup_para_frac: float | None = Field(0.3, ge=0, le=1, description="reject documents with a larger share of "
                                                                     "paragraphs seen earlier in them")
    dup_line_char_frac: float | None = Field(0.2, ge=0, le=1, description="reject documents with a larger share of "
                                                                          "characters in repeated lines")
    dup_para_char_frac: float | None = Field(0.2, ge=0, le=1, description="reject documents with a larger share of "
                                                                          "characters in repeated paragraphs")
    top_n_grams: list[tuple[int, float]] = Field([(2, 0.2), (3, 0.18), (4, 0.16)], description=(
        "(n, share): reject documents whose most frequent word n-gram covers a larger share of the characters"))
    dup_n_grams: list[tuple[int, float]] = Field(
        [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)], description=(
            "(n, share): reject documents whose repeated word n-grams cover a larger share of the characters"))


def duplicate_elements(texts, min_newlines: int) -> tuple[np.ndarray, np.ndarray]:
    """Per document: the fraction of its elements seen earlier in it, and the characters in those repeats.
    Elements are what splitting the whitespace-trimmed text at every run of `min_newlines` or more newlines
    leaves: lines (1) or paragraphs (2)."""
    data, offsets = buffers(texts)
    counts = np.zeros((len(texts), 3))
    longest = int(np.diff(offsets).max(initial=0))
    _duplicate_elements(data, offsets, SPACE, min_newlines, longest // 2 + 1, counts)
    return ratio(counts[:, 1], counts[:, 0]), counts[:, 2]


@njit(cache=True, nogil=True)
def _duplicate_elements(data, offsets, space, min_newlines, max_elements, out):
    """out[t]: elements, repeats, characters in repeats; an exact hash table per text (bytes compared)."""
    mask = 1
    while mask < 2 * max_elements:
        mask *= 2
    slots, used, hashes = np.full(mask, -1), np.empty(max_elements, np.int64), np.empty(max_elements, np.uint64)
    starts, ends = np.empty(max_elements, np.int64), np.empty(max_elements, np.int64)
    mask -= 1
    for t in range(offsets.shape[0] - 1):
        start, end = trimmed(data, offsets[t], offsets[t + 1], space)
        n, pos = 0, start
        while True:  # one element per pass: up to the next run of min_newlines newlines, or the end
            stop, after = pos, pos
            while stop < end:
                if data[stop] == 0x0A:
                    run = stop
                    while run < end and data[run] == 0x0A:
                        run += 1
                    if run - stop >= min_newlines:
                        after = run
                        break
                    stop = run
                else:
                    stop += 1
            h = hash_bytes(data, pos, stop)
            slot = np.int64(h & np.uint64(mask))
            while slots[slot] >= 0 and not (hashes[slots[slot]] == h and same_bytes(
                    data, starts[slots[slot]], ends[slots[slot]], pos, stop)):
                slot = (slot + 1) & mask
            if slots[slot] >= 0:
                out[t, 1] += 1
                for k in range(pos, stop):
                    if data[k] & 0xC0 != 0x80:  # a character's first byte
                        out[t, 2] += 1
            else:
                slots[slot], hashes[n], starts[n], ends[n], used[n] = n, h, pos, stop, slot
                n += 1
            out[t, 0] += 1
            if stop >= end:
                break
            pos = after
        for k in range(n):
            slots[used[k]] = -1


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
            h = hash_bytes(data, starts[i], ends[i])
            slot = np.int64(h & np.uint64(mask))
            while word_slots[slot] >= 0:
                o = word_slots[slot]
                if word_hash[o] == h and same_bytes(data, starts[word_first[o]], ends[word_first[o]],
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


def filter_gopher_repetition(table: pa.Table, settings: GopherRepetitionSettings) -> tuple[pa.Table, pa.Table]:
    s = settings
    texts = table["text"]
    chars = text_lengths(texts)
    checks = []

    def add(name, limit, value, label):
        if limit is not None:
            checks.append(Check(f"gopher_repetition.{name}", value > limit, value, f"> {limit} ({label})"))

    para_frac, para_chars = duplicate_elements(texts, 2)
    line_frac, line_chars = duplicate_elements(texts, 1)
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
