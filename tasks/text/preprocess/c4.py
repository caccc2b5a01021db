"""C4 rules (Raffel et al. 2020) as datatrove's C4QualityFilter applies them, over all lines of a batch.

Line rules drop lines (no terminal punctuation, too few words, a word too long, "javascript", policy
boilerplate; citation marks are removed); document rules reject the whole document (lorem ipsum or a
curly bracket on a line that survived the line rules, too few sentences left). Kept documents keep only
their surviving lines; `c4_lines_removed` says how many went.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.text.preprocess.text import per_doc_sum, split_lines
from tasks.text.preprocess.words import word_counts
from pydantic import Field

from tasks.records import Check, Settings, split_by_checks

CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
POLICY = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]
SENTENCE_END = r"[.!?。！？]+[\"'”’)\]]*(?:\s|$)"


class C4Settings(Settings):
    """C4's line and document rules (Raffel et al. 2020, as datatrove's C4QualityFilter)."""
    enabled: bool = Field(True, description="apply the C4 rules")
    remove_citations: bool = Field(True, description="remove Wikipedia-style [1], [edit], [citation needed]")
    filter_no_terminal_punct: bool = Field(True, description="drop lines that do not end in terminal punctuation")
    min_words_per_line: int | None = Field(3, ge=0, description="drop lines with fewer words")
    max_word_length: int | None = Field(1000, ge=1, description="drop lines with a longer word (characters)")
    filter_javascript: bool = Field(True, description="drop lines that mention javascript")
    filter_policy: bool = Field(True, description="drop lines about terms of use, privacy or cookie policies")
    filter_lorem_ipsum: bool = Field(True, description="reject documents holding 'lorem ipsum'")
    filter_curly_bracket: bool = Field(True, description="reject documents with a curly bracket (code)")
    min_num_sentences: int | None = Field(5, ge=0, description="reject documents with fewer sentences left")


def _contains_any(values, needles: list[str]) -> np.ndarray:
    """One regex pass for all needles instead of one pass each."""
    return np.asarray(pc.match_substring_regex(values, "|".join(map(re.escape, needles))), dtype=bool)


def filter_c4(table: pa.Table, settings: C4Settings) -> tuple[pa.Table, pa.Table]:
    s = settings
    n_docs = table.num_rows
    lines, parent = split_lines(table["text"])
    lines = pc.utf8_trim_whitespace(lines)
    n_lines = len(lines)
    n_words, longest = word_counts(lines)
    keep = np.ones(n_lines, dtype=bool)
    if s.max_word_length is not None:
        keep &= longest <= s.max_word_length
    if s.remove_citations:
        lines = pc.replace_substring_regex(lines, CITATION, "")
    if s.filter_no_terminal_punct:
        keep &= np.asarray(pc.match_substring_regex(lines, r"[.?!\"']$"), dtype=bool)
        keep &= ~np.asarray(pc.ends_with(lines, "..."), dtype=bool)
    if s.min_words_per_line is not None:
        keep &= n_words >= s.min_words_per_line
    lower = pc.utf8_lower(lines)
    # Document killers count only on lines that survived the rules above, as in datatrove.
    first_line = np.full(n_docs, np.iinfo(np.int64).max)
    line_no = np.arange(n_lines)

    def first_hit(hit: np.ndarray) -> np.ndarray:
        pos = first_line.copy()
        np.minimum.at(pos, parent[hit], line_no[hit])
        return pos

    lorem_at = first_hit(keep & np.asarray(pc.match_substring(lower, "lorem ipsum"), dtype=bool)) \
        if s.filter_lorem_ipsum else first_line
    if s.filter_javascript:
        keep &= ~np.asarray(pc.match_substring(lower, "javascript"), dtype=bool)
    curly_at = first_hit(keep & np.asarray(pc.match_substring(lines, "{"), dtype=bool)) \
        if s.filter_curly_bracket else first_line
    if s.filter_policy:
        keep &= ~_contains_any(lower, POLICY)
    sentences = np.maximum(np.asarray(pc.count_substring_regex(lines, SENTENCE_END), dtype=np.float64), 1.0)
    doc_sentences = per_doc_sum(parent, sentences * keep, n_docs)

    none = first_line[0]
    lines_per_doc = np.bincount(parent, minlength=n_docs)
    doc_start = np.concatenate([[0], np.cumsum(lines_per_doc)[:-1]])
    checks = [
        Check("c4.lorem_ipsum", (lorem_at < none) & (lorem_at < curly_at), _line_labels(lorem_at, doc_start),
              "has 'lorem ipsum'"),
        Check("c4.curly_bracket", curly_at < none, _line_labels(curly_at, doc_start), "has '{'"),
    ]
    if s.min_num_sentences is not None:
        checks.append(Check("c4.min_num_sentences", doc_sentences < s.min_num_sentences, doc_sentences.astype(int),
                            f"< {s.min_num_sentences} (sentences in kept lines)"))
    counts = np.bincount(parent[keep], minlength=n_docs)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    kept_text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), lines.filter(pa.array(keep))), "\n")
    removed = lines_per_doc - counts
    table = table.append_column("c4_lines_removed", pa.array(removed, pa.int64()))
    kept, rejected = split_by_checks(table.append_column("_c4_text", kept_text), checks)
    kept = kept.set_column(kept.schema.get_field_index("text"), "text", kept["_c4_text"])
    # Rejected rows keep their text as it came in, so a person can see what the rule saw.
    return kept.drop_columns(["_c4_text"]), rejected.drop_columns(["_c4_text"])


def _line_labels(line_index: np.ndarray, doc_start: np.ndarray) -> np.ndarray:
    """ "line N" (1-based, within its document) for a batch-wide line index; unused where there is no hit."""
    within = np.where(line_index < np.iinfo(np.int64).max, line_index - doc_start, -1)
    return np.char.add("line ", (within + 1).astype(str))
