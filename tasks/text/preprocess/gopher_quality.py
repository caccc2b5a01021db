"""Gopher quality rules (Rae et al. 2021), with the thresholds datatrove's GopherQualityFilter uses.

Words are whitespace tokens with surrounding punctuation trimmed (a token of punctuation only is a
"symbol word"), all computed as Arrow/NumPy arrays over the flattened words of the batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.text.preprocess.text import per_doc_count, per_doc_sum, ratio, split_lines, split_words
from tasks.records import Check, Settings, split_by_checks

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»“”‘’„‚‹›¡¿…·—–•"


class GopherQualitySettings(Settings):
    enabled: bool = True
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: list[str] = ["the", "be", "to", "of", "and", "that", "have", "with"]


def gopher_signals(texts, stop_words: list[str]) -> dict[str, np.ndarray]:
    """Per-document measures the Gopher rules compare with their thresholds."""
    n_docs = len(texts)
    words, parent = split_words(texts)
    core = pc.utf8_trim(words, PUNCTUATION)
    core_len = np.asarray(pc.utf8_length(core), dtype=np.float64)
    is_word = core_len > 0
    n_words = per_doc_count(parent, n_docs)
    n_core = per_doc_sum(parent, is_word, n_docs)
    alpha = np.asarray(pc.match_substring_regex(words, r"\pL"), dtype=bool)
    lines, line_parent = split_lines(texts)
    n_lines = per_doc_count(line_parent, n_docs)
    bullet = np.asarray(pc.match_substring_regex(lines, r"^\s*[•\-]"), dtype=bool)
    ellipsis_end = np.asarray(pc.match_substring_regex(lines, r"(\.\.\.|…)\s*$"), dtype=bool)
    hashes = np.asarray(pc.count_substring(texts, "#"), dtype=np.float64)
    ellipses = (np.asarray(pc.count_substring(texts, "..."), dtype=np.float64)
                + np.asarray(pc.count_substring(texts, "…"), dtype=np.float64))
    return {
        "n_words": n_core,
        "avg_word_length": ratio(per_doc_sum(parent, core_len, n_docs), n_core),
        "hash_ratio": ratio(hashes, n_words),
        "ellipsis_ratio": ratio(ellipses, n_words),
        "bullet_lines_ratio": ratio(per_doc_sum(line_parent, bullet, n_docs), n_lines),
        "ellipsis_lines_ratio": ratio(per_doc_sum(line_parent, ellipsis_end, n_docs), n_lines),
        "alpha_words_ratio": ratio(per_doc_sum(parent, alpha, n_docs), n_words),
        "stop_words": per_doc_sum(parent, pc.is_in(pc.utf8_lower(core), pa.array(stop_words, pa.string())), n_docs),
    }


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
