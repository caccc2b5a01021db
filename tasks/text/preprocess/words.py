"""Words as Arrow's `utf8_split_whitespace` finds them (maximal runs of non-whitespace code points), walked by
compiled kernels over a column's UTF-8 bytes, so no Arrow string is made per word.

`next_word` is the step the word rules' kernels share; `word_counts` is the simplest of them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tasks.text.utf8 import WHITESPACE, buffers, code_point_table, decode

SPACE = code_point_table(WHITESPACE)


@njit(cache=True, nogil=True)
def next_word(data, pos, end, space):
    """(start, stop, characters) of the first word at or after byte `pos` of a text that ends at byte `end`;
    start == stop == end when no word is left."""
    while pos < end:
        cp, size = decode(data, pos)
        if space[cp] == 0:
            break
        pos += size
    start, chars = pos, 0
    while pos < end:
        cp, size = decode(data, pos)
        if space[cp] == 1:
            break
        pos += size
        chars += 1
    return start, pos, chars


@njit(cache=True, nogil=True)
def trimmed(data, start, end, space):
    """The byte span of data[start:end] without its leading and trailing whitespace (as utf8_trim_whitespace)."""
    while start < end:
        cp, size = decode(data, start)
        if space[cp] == 0:
            break
        start += size
    while end > start:
        lead = end - 1
        while data[lead] & 0xC0 == 0x80:  # back to the first byte of the last character
            lead -= 1
        cp, size = decode(data, lead)
        if space[cp] == 0:
            break
        end = lead
    return start, end


@njit(cache=True, nogil=True)
def _word_counts(data, offsets, space, counts, longest):
    for t in range(offsets.shape[0] - 1):
        pos, end = offsets[t], offsets[t + 1]
        while True:
            start, pos, chars = next_word(data, pos, end, space)
            if start == end:
                break
            counts[t] += 1
            longest[t] = max(longest[t], chars)


def word_counts(texts) -> tuple[np.ndarray, np.ndarray]:
    """Per text: its number of words and the characters in its longest word."""
    data, offsets = buffers(texts)
    counts, longest = np.zeros(len(offsets) - 1, dtype=np.int64), np.zeros(len(offsets) - 1, dtype=np.int64)
    _word_counts(data, offsets, SPACE, counts, longest)
    return counts, longest
