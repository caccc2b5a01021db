"""Text preprocessing: normalise, identify the language, apply quality rules and the learned quality
classifier, redact PII.

`preprocess(table, settings)` is the per-shard stage function: every row leaves as kept or rejected
(with the first rule it failed). Cheap rules run first so expensive ones see fewer rows.
"""

from __future__ import annotations

import pyarrow as pa

from tasks.text.preprocess.c4 import C4Settings, filter_c4
from tasks.text.preprocess.gopher_quality import GopherQualitySettings, filter_gopher_quality, gopher_signals
from tasks.text.preprocess.gopher_repetition import (GopherRepetitionSettings, duplicate_elements,
                                                      filter_gopher_repetition, ngram_chars)
from tasks.text.preprocess.language import LanguageSettings, filter_language
from tasks.text.preprocess.length import LengthSettings, filter_length
from tasks.text.preprocess.normalise import NormaliseSettings, normalise
from tasks.text.preprocess.pii import PIISettings, redact_pii
from tasks.text.preprocess.quality_classifier import QualityClassifierSettings, filter_quality_classifier
from tasks.text.preprocess.words import word_counts
from pydantic import Field

from tasks.records import Settings, concat


class PreprocessSettings(Settings):
    """Text's preprocess rules, in the order they run."""
    normalise: NormaliseSettings = Field(NormaliseSettings(), description="Unicode, mojibake and whitespace repair")
    length: LengthSettings = Field(LengthSettings(), description="character-count bounds")
    language: LanguageSettings = Field(LanguageSettings(), description="language identification and the languages kept")
    gopher_quality: GopherQualitySettings = Field(GopherQualitySettings(), description="Gopher's quality rules")
    gopher_repetition: GopherRepetitionSettings = Field(GopherRepetitionSettings(),
                                                        description="Gopher's repetition rules")
    c4: C4Settings = Field(C4Settings(), description="C4's line and document rules")
    quality_classifier: QualityClassifierSettings = Field(QualityClassifierSettings(), description=(
        "a learned quality score (trained here on your good and bad documents, or a local fastText model)"))
    pii: PIISettings = Field(PIISettings(), description="personal data redaction")


def preprocess(table: pa.Table, settings: PreprocessSettings) -> tuple[pa.Table, pa.Table]:
    table = normalise(table, settings.normalise)
    rejected = []
    for rule_settings, apply in ((settings.length, filter_length),
                                 (settings.language, filter_language),
                                 (settings.gopher_quality, filter_gopher_quality),
                                 (settings.gopher_repetition, filter_gopher_repetition),
                                 (settings.c4, filter_c4),
                                 (settings.quality_classifier, filter_quality_classifier)):
        if rule_settings.enabled and table.num_rows:  # a rule never sees an empty table
            table, rej = apply(table, rule_settings)
            rejected.append(rej)
    return redact_pii(table, settings.pii), concat(rejected)


def load_kernels() -> None:
    """Load the compiled word kernels (compiling them on a first install) and build their code point tables:
    about 0.4 s that a worker spends before its first shard instead of in it."""
    texts = pa.array(["a b a b"])
    gopher_signals(texts, ["a"])
    duplicate_elements(texts, 1)
    ngram_chars(texts, 2)
    word_counts(texts)
