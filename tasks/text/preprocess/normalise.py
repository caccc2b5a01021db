"""Text normalisation: ANSI escapes, mojibake, control characters, Unicode form and whitespace.

Everything runs as Arrow regex kernels over the whole column; ftfy (a Python call per text) runs only on
the texts that show mojibake marks, which are few.
"""

from __future__ import annotations

from typing import Literal

import ftfy
import pyarrow as pa
import pyarrow.compute as pc

from pydantic import Field

from tasks.records import Settings

ANSI_ESCAPE = r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]"
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
# UTF-8 read as Latin-1/cp1252 leaves these pairs behind: "Ã©" for "é", "â€™" for "'", "Â " for a nbsp.
MOJIBAKE = r"[ÃÂ][\x{80}-\x{BF}]|â€|Ã[\x{2018}-\x{201E}\x{2020}-\x{2022}\x{2026}\x{2030}\x{2039}\x{203A}\x{20AC}\x{2122}]"
UNICODE_SPACES = r"[\x{00A0}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}]"


class NormaliseSettings(Settings):
    enabled: bool = Field(True, description="normalise every text before the rules read it")
    strip_ansi: bool = Field(True, description="remove ANSI terminal escapes (colours, cursor moves)")
    fix_unicode: bool = Field(True, description="repair mojibake (UTF-8 read as Latin-1: 'Ã©' for 'é') with ftfy")
    strip_control: bool = Field(True, description="remove control characters other than tab and newlines")
    unicode_form: Literal["NFC", "NFKC", "none"] = Field("NFC", description="Unicode normalisation form")
    clean_whitespace: bool = Field(True, description="Unicode spaces to ' ', trailing spaces and runs of blank "
                                                     "lines removed")


def fix_mojibake(texts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Repair mojibake with ftfy on the texts that show its marks; others pass through untouched."""
    suspect = pc.match_substring_regex(texts, MOJIBAKE)
    if not pc.any(suspect).as_py():
        return texts
    values = texts.to_pylist()
    for i in pc.indices_nonzero(suspect).to_pylist():
        values[i] = ftfy.fix_text(values[i], normalization=None)
    return pa.array(values, pa.string())


def clean_whitespace(texts):
    """Unify line ends and exotic spaces, trim trailing spaces, keep at most one blank line, trim the text.

    Indentation and runs of inner spaces stay: they carry meaning in code, tables and verse.
    """
    texts = pc.replace_substring_regex(texts, r"\r\n?", "\n")
    texts = pc.replace_substring_regex(texts, UNICODE_SPACES, " ")
    texts = pc.replace_substring_regex(texts, r"[ \t]+\n", "\n")
    texts = pc.replace_substring_regex(texts, r"\n{3,}", "\n\n")
    return pc.utf8_trim_whitespace(texts)


def normalise_texts(texts, settings: NormaliseSettings):
    if settings.strip_ansi:
        texts = pc.replace_substring_regex(texts, ANSI_ESCAPE, "")
    if settings.fix_unicode:
        texts = fix_mojibake(texts)
    if settings.strip_control:
        texts = pc.replace_substring_regex(texts, CONTROL, "")
    if settings.unicode_form != "none":
        texts = pc.utf8_normalize(texts, settings.unicode_form)
    if settings.clean_whitespace:
        texts = clean_whitespace(texts)
    return texts


def normalise(table: pa.Table, settings: NormaliseSettings) -> pa.Table:
    """The table with its `text` column normalised (normalisation rejects nothing)."""
    if not settings.enabled or table.num_rows == 0:
        return table
    return table.set_column(table.schema.get_field_index("text"), "text", normalise_texts(table["text"], settings))
