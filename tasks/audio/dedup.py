"""The audio sketch: the exact key is the hash of the clip's 16-bit PCM, mono at 16 kHz (`pcm_hash`); the
near-duplicate keys are bands of fingerprint bits around the clip's loudest moment, and a candidate pair
is verified by the fingerprints' bit error rate (`tasks.audio.fingerprint`).

Bands sample `band_bits` of the 1,024 bits of the 32 frames nearest the anchor (positions drawn once from
`seed`). Measured on the shared clips (bench/audio_fingerprint.py): a 64 kbit/s MP3 of a clip differs in
5.5% of the bits (median) and shares a band with it in 96% of clips, a resampled or quieter copy in all;
two different clips differ in 32% or more (one pair at 4%: the same prompt shipped twice).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from tasks.audio import fingerprint
from tasks.dedup import DedupSettings, Sketch, bit_sampling_keys, signature_matrix

PAIRS_AT_ONCE = 100_000  # candidate pairs verified together: about 30 MB of frames
REGION = slice(fingerprint.BEFORE - 8, fingerprint.BEFORE + 24)  # frames the band keys sample


class AudioDedupSettings(DedupSettings):
    bands: int = Field(32, ge=1, le=256, description="fingerprint bands (LSH tables)")
    band_bits: int = Field(16, ge=1, le=64, description="fingerprint bits sampled by each band")
    max_bit_error_rate: float = Field(0.2, ge=0, le=0.5, description="near-duplicates differ in at most this share "
                                                                   "of fingerprint bits (different clips: 0.33-0.5)")
    max_shift_frames: int = Field(4, ge=0, le=16, description="8 ms frames a copy may be shifted by")
    min_frames: int = Field(16, ge=1, le=64, description="fingerprint frames two clips must share to be compared")
    seed: int = 1
    keep: Literal["largest", "first", "quality"] = Field(
        "largest", description="which clip of a cluster stays: the most original samples (rate x duration: the "
                               "highest-rate, least-trimmed copy), the first seen, or the highest quality_column")
    quality_column: str = Field("speech_fraction", description="numeric column ranking clips when keep is 'quality'")

    def columns(self) -> list[str]:
        return ["pcm_hash", "fingerprint", "original_sample_rate", "duration_s"]

    def near_bands(self) -> int:
        return self.bands

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) uint64 LSH keys of (n, WIDTH) fingerprint signatures."""
        _, packed = fingerprint.unpack(signatures)
        bits = np.unpackbits(packed[:, REGION], axis=2).reshape(len(signatures), 32 * 32)
        return bit_sampling_keys(bits, self.bands, self.band_bits, self.seed)

    def sketch(self, table: pa.Table) -> Sketch:
        signatures = signature_matrix(table["fingerprint"])
        valid, _ = fingerprint.unpack(signatures)
        near = self.band_keys(signatures)
        content = signature_matrix(table["pcm_hash"]).copy().view(np.uint64)
        size = np.round(np.asarray(table["original_sample_rate"], dtype=np.float64)
                        * np.asarray(table["duration_s"], dtype=np.float64)).astype(np.int64)
        return Sketch(content=content, near=near, has_near=valid[:, REGION].sum(axis=1) >= self.min_frames,
                      signature=signatures, size=size)

    def similar(self, sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
        ber = [fingerprint.bit_error_rate(sig_u[i:i + PAIRS_AT_ONCE], sig_v[i:i + PAIRS_AT_ONCE],
                                          self.max_shift_frames, self.min_frames)
               for i in range(0, len(sig_u), PAIRS_AT_ONCE)]
        return np.concatenate(ber) <= self.max_bit_error_rate if ber else np.zeros(0, dtype=bool)

    def sketch_params(self) -> dict:
        return {"sketch": "hk-fingerprint", "bands": self.bands, "band_bits": self.band_bits, "seed": self.seed,
                "frames": fingerprint.FRAMES, "rate": fingerprint.RATE}
