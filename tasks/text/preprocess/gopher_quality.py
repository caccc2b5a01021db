"""Gopher quality rules (Rae et al. 2021), with the thresholds datatrove's GopherQualityFilter uses.

Words are whitespace tokens with surrounding punctuation trimmed (a token of punctuation only is a
"symbol word"). One compiled pass over the texts' bytes counts them per document; line and symbol
measures are Arrow kernels over the whole column.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from tasks.text.preprocess.text import per_doc_count, per_doc_sum, ratio, split_lines
from tasks.text.preprocess.words import SPACE, next_word
from tasks.text.utf8 import buffers, code_point_table, code_points_of, decode, every_character
from pydantic import Field

from tasks.records import Check, Settings, split_by_checks

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»“”‘’„‚‹›¡¿…·—–•"
PUNCT = code_point_table(map(ord, PUNCTUATION))


class GopherQualitySettings(Settings):
    """Gopher's quality rules (Rae et al. 2021, as datatrove's GopherQualityFilter); null turns one rule off."""
    enabled: bool = Field(True, description="apply the Gopher quality rules")
    min_doc_words: int | None = Field(50, ge=0, description="reject documents with fewer words")
    max_doc_words: int | None = Field(100_000, ge=0, description="reject documents with more words")
    min_avg_word_length: float | None = Field(3, ge=0, description="reject documents whose mean word length "
                                                                   "(characters) is shorter")
    max_avg_word_length: float | None = Field(10, ge=0, description="reject documents whose mean word length is longer")
    max_symbol_word_ratio: float | None = Field(0.1, ge=0, le=1, description="reject documents with more '#' and "
                                                                             "ellipses per word")
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1, description="reject documents with a larger share "
                                                                              "of lines starting with a bullet")
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1, description="reject documents with a larger share "
                                                                                "of lines ending in an ellipsis")
    max_non_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1, description=(
        "reject documents whose share of words with a letter is below this (Gopher's 80% rule; the name is "
        "datatrove's)"))
    min_stop_words: int | None = Field(2, ge=0, description="reject documents with fewer of the stop words")
    stop_words: list[str] = Field(["the", "be", "to", "of", "and", "that", "have", "with"],
                                  description="the words min_stop_words counts (English by default)")


def gopher_signals(texts, stop_words: list[str]) -> dict[str, np.ndarray]:
    """Per-document measures the Gopher rules compare with their thresholds."""
    data, offsets = buffers(texts)
    letter, lower = letters_and_lower_case()
    stop = np.array([ord(c) for word in stop_words for c in word], dtype=np.int64)
    stop_offsets = np.cumsum([0] + [len(word) for word in stop_words])
    counts = np.zeros((len(texts), 7))
    _word_signals(data, offsets, SPACE, PUNCT, letter, lower, stop, stop_offsets, counts)
    tokens, words, core_chars, alpha, stop_hits, hashes, ellipses = counts.T
    lines, line_parent = split_lines(texts)
    n_lines = per_doc_count(line_parent, len(texts))
    bullet = np.asarray(pc.match_substring_regex(lines, r"^\s*[•\-]"), dtype=bool)
    ellipsis_end = np.asarray(pc.match_substring_regex(lines, r"(\.\.\.|…)\s*$"), dtype=bool)
    return {
        "n_words": words,
        "avg_word_length": ratio(core_chars, words),
        "hash_ratio": ratio(hashes, tokens),
        "ellipsis_ratio": ratio(ellipses, tokens),
        "bullet_lines_ratio": ratio(per_doc_sum(line_parent, bullet, len(texts)), n_lines),
        "ellipsis_lines_ratio": ratio(per_doc_sum(line_parent, ellipsis_end, len(texts)), n_lines),
        "alpha_words_ratio": ratio(alpha, tokens),
        "stop_words": stop_hits,
    }


@lru_cache(maxsize=1)
def letters_and_lower_case() -> tuple[np.ndarray, np.ndarray]:
    """Per code point: 1 for a letter (RE2's \\pL) and its lower case (Arrow's utf8_lower)."""
    chars = every_character()
    return (np.asarray(pc.match_substring_regex(chars, r"\pL"), dtype=np.uint8),
            code_points_of(pc.utf8_lower(chars)))


@njit(cache=True, nogil=True)
def _word_signals(data, offsets, space, punct, letter, lower, stop, stop_offsets, out):
    """Per text, into out[t]: tokens, words (tokens with a core left once punctuation is trimmed from both
    ends), characters in the words' cores, tokens with a letter, cores that are stop words in lower case,
    and the text's "#" and its ellipses ("..." or "…"; whitespace never splits one, so counting them
    inside the tokens counts them all)."""
    for t in range(offsets.shape[0] - 1):
        pos, end = offsets[t], offsets[t + 1]
        while True:
            start, pos, chars = next_word(data, pos, end, space)
            if start == end:
                break
            first, last, core_start, alpha, dots = -1, -1, start, False, 0
            p, i = start, 0
            while p < pos:
                cp, size = decode(data, p)
                alpha = alpha or letter[cp] == 1
                dots = dots + 1 if cp == 0x2E else 0
                if dots == 3:  # "..." counted as count_substring does: left to right, not overlapping
                    out[t, 6] += 1
                    dots = 0
                if cp == 0x23:
                    out[t, 5] += 1
                elif cp == 0x2026:
                    out[t, 6] += 1
                if punct[cp] == 0:
                    if first < 0:
                        first, core_start = i, p
                    last = i
                p += size
                i += 1
            out[t, 0] += 1
            if alpha:
                out[t, 3] += 1
            if first >= 0:
                out[t, 1] += 1
                out[t, 2] += last - first + 1
                if _is_stop_word(data, core_start, last - first + 1, lower, stop, stop_offsets):
                    out[t, 4] += 1


@njit(cache=True, nogil=True)
def _is_stop_word(data, start, length, lower, stop, stop_offsets):
    """Whether the `length` characters at byte `start`, lower-cased, are one of the stop words."""
    for w in range(stop_offsets.shape[0] - 1):
        if stop_offsets[w + 1] - stop_offsets[w] != length:
            continue
        p, k = start, stop_offsets[w]
        while k < stop_offsets[w + 1]:
            cp, size = decode(data, p)
            if lower[cp] != stop[k]:
                break
            p += size
            k += 1
        if k == stop_offsets[w + 1]:
            return True
    return False


def filter_gopher_quality(table: pa.Table, settings: GopherQualitySettings) -> tuple[pa.Table, pa.Table]:
    s = settings
    m = gopher_signals(table["text"], s.stop_words)
    candidates = [
        ("min_doc_words", s.min_doc_words, "n_words", np.less, "<"),
        ("max_doc_words", s.max_doc_words, "n_words", np.greater, ">"),
        ("min_avg_word_length", s.min_avg_word_length, "avg_word_length", np.less, "<"),
        ("max_avg_word_length", s.max_avg_word_length, "avg_word_length", np.greater, ">"),
        ("max_symbol_word_ratio", s.max_symbol_word_ratio, "hash_ratio", np.greater, ">"),
        ("max_symbol_word_ratio", s.max_symbol_word_ratio, "ellipsis_ratio", np.greater, ">"),
        ("max_bullet_lines_ratio", s.max_bullet_lines_ratio, "bullet_lines_ratio", np.greater, ">"),
        ("max_ellipsis_lines_ratio", s.max_ellipsis_lines_ratio, "ellipsis_lines_ratio", np.greater, ">"),
        ("max_non_alpha_words_ratio", s.max_non_alpha_words_ratio, "alpha_words_ratio", np.less, "<"),
        ("min_stop_words", s.min_stop_words, "stop_words", np.less, "<"),
    ]
    checks = []
    for name, limit, signal, breaks, op in candidates:
        if limit is None:
            continue
        checks.append(Check(f"gopher_quality.{name}", breaks(m[signal], limit), m[signal], f"{op} {limit} ({signal})"))
    return split_by_checks(table, checks)
