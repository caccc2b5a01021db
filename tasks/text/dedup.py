"""The text sketch: MinHash of word n-grams (datasketch's model, see `minhash`) with LSH bands, and the
whitespace- and case-normalised content hash for exact duplicates; a candidate pair is verified by the
Jaccard similarity its signatures estimate."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from tasks.dedup import DedupSettings, Sketch
from tasks.text.minhash import band_keys, lsh_params, sketch
from tasks.text.semantic import SemanticDedupSettings


class TextDedupSettings(DedupSettings):
    ngram: int = Field(5, ge=1, description="word n-gram size of the shingles")
    num_perm: int = Field(256, ge=16, le=1024, description="MinHash permutations (more: a closer Jaccard estimate)")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity the LSH bands are tuned for")
    bands: int | None = Field(None, ge=1, description="LSH bands; with rows, overrides the threshold's choice")
    rows: int | None = Field(None, ge=1, description="rows per LSH band; with bands, overrides the threshold's choice")
    seed: int = Field(1, ge=0, description="seed of the MinHash permutations (an index built with another is "
                                           "matched by exact copies only)")
    semantic: SemanticDedupSettings = Field(SemanticDedupSettings(), description=(
        "after exact and MinHash dedup: embeddings trained on the run's documents, k-means, and pairs of cosine "
        ">= threshold inside each cluster (rule dedup.semantic)"))
    keep: Literal["first", "longest", "quality"] = Field(
        "first", description="which document of a cluster stays: first seen, longest text, or highest quality_column")

    @model_validator(mode="after")
    def _bands_and_rows(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def lsh(self) -> tuple[int, int]:
        """Bands and rows. With verification, chosen for recall (false negatives weigh 0.95): verification
        removes the extra false candidates; without it, FP and FN weigh the same (datasketch's default)."""
        if self.bands:
            return self.bands, self.rows
        return lsh_params(self.threshold, self.num_perm, (0.05, 0.95) if self.verify else (0.5, 0.5))

    def columns(self) -> list[str]:
        return ["text"]

    def near_bands(self) -> int:
        return self.lsh()[0]

    def sketch(self, table: pa.Table) -> Sketch:
        bands, rows = self.lsh()
        sig, shingles, content = sketch(table["text"], self.num_perm, self.ngram, self.seed)
        return Sketch(content=content, near=band_keys(sig, bands, rows), has_near=shingles > 0,
                      signature=sig.view(np.uint8), size=np.asarray(pc.utf8_length(table["text"]), dtype=np.int64))

    def similar(self, sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
        """Estimated Jaccard similarity at or above the threshold."""
        return (sig_u.view(np.uint32) == sig_v.view(np.uint32)).mean(axis=1) >= self.threshold

    def sketch_params(self) -> dict:
        bands, rows = self.lsh()
        return {"ngram": self.ngram, "num_perm": self.num_perm, "seed": self.seed, "bands": bands, "rows": rows}
