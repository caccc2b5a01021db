"""The audio sketch: the exact key is the hash of the clip's 16-bit PCM, mono at 16 kHz (`pcm_hash`); the
near-duplicate keys sample fingerprint bits of the windows around the clip's loudest moments, at every frame
of each window, and a candidate pair is verified by the fingerprints' bit error rate
(`tasks.audio.fingerprint`), windows offset by up to `max_shift_frames`.

Measured on the shared clips (bench/audio_fingerprint.py): a 64 kbit/s MP3 of a clip differs in 5.3% of the
bits (median) and is found in 96% of clips, a resampled or quieter copy in all, a copy trimmed at the start
by 0.1 s, 0.25 s or 10% in all, by 0.5 s in 92% and by 30% in 95%; two different clips differ in 31% or
more (one pair at 4%: the same prompt shipped twice).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from tasks.audio import fingerprint
from tasks.dedup import DedupSettings, Sketch, bit_sampling_keys, signature_matrix

PAIRS_AT_ONCE = 100_000  # candidate pairs verified together: about 30 MB of frames
SPAN = 8          # consecutive frames (64 ms) whose bits one band key samples
MIN_ONES = 0.2    # a span with a smaller share of set bits (or of unset ones) has no key


class AudioDedupSettings(DedupSettings):
    bands: int = Field(2, ge=1, le=64, description="fingerprint bands (LSH tables), each keyed at every frame")
    band_bits: int = Field(32, ge=1, le=64, description="bits each band samples of SPAN consecutive frames")
    max_bit_error_rate: float = Field(0.2, ge=0, le=0.5, description="near-duplicates differ in at most this share "
                                                                   "of fingerprint bits (different clips: 0.33-0.5)")
    max_shift_frames: int = Field(48, ge=0, le=fingerprint.FRAMES - 1, description=(
        "8 ms frames two windows may be offset by: a trimmed copy's window sits elsewhere on the sound"))
    min_frames: int = Field(16, ge=1, le=64, description="fingerprint frames two clips must share to be compared")
    seed: int = Field(1, ge=0, description="seed of the bit sampling of the LSH bands")
    keep: Literal["largest", "first", "quality"] = Field(
        "largest", description="which clip of a cluster stays: the most original samples (rate x duration: the "
                               "highest-rate, least-trimmed copy), the first seen, or the highest quality_column")
    quality_column: str = Field("speech_fraction", description="numeric column ranking clips when keep is 'quality'")

    def columns(self) -> list[str]:
        return ["pcm_hash", "fingerprint", "original_sample_rate", "duration_s"]

    def near_bands(self) -> int:
        return self.bands

    def band_keys(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((n, bands, keys) uint64 LSH keys, (n, keys) bool usable) of (n, WIDTH) fingerprint signatures.

        A key samples `band_bits` bits of SPAN consecutive frames, at every position of every window: a copy
        whose window is offset from the original's (it was trimmed, so its loudest moment is elsewhere)
        still meets it at the positions the two windows share. Spans of nearly constant bits (silence) are
        not used: they would pair every quiet clip with every other."""
        valid, packed = fingerprint.unpack(signatures)
        n, per_clip = len(signatures), fingerprint.ANCHORS * (fingerprint.FRAMES - SPAN + 1)
        spans = np.lib.stride_tricks.sliding_window_view(packed, SPAN, axis=2)     # (n, A, positions, 4, SPAN)
        spans = spans.transpose(0, 1, 2, 4, 3).reshape(n * per_clip, SPAN * 4)
        bits = np.unpackbits(spans, axis=1)
        keys = bit_sampling_keys(bits, self.bands, self.band_bits, self.seed)
        ones = bits.mean(axis=1, dtype=np.float32).reshape(n, per_clip)
        whole = np.lib.stride_tricks.sliding_window_view(valid, SPAN, axis=2).all(axis=3).reshape(n, per_clip)
        usable = whole & (ones >= MIN_ONES) & (ones <= 1 - MIN_ONES)
        return keys.reshape(n, per_clip, self.bands).transpose(0, 2, 1), usable

    def sketch(self, table: pa.Table) -> Sketch:
        signatures = signature_matrix(table["fingerprint"])
        content = signature_matrix(table["pcm_hash"]).copy().view(np.uint64)
        size = np.round(np.asarray(table["original_sample_rate"], dtype=np.float64)
                        * np.asarray(table["duration_s"], dtype=np.float64)).astype(np.int64)
        near, usable = self.band_keys(signatures)
        return Sketch(content=content, near=near, has_near=usable, signature=signatures, size=size)

    def similar(self, sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
        ber = [fingerprint.bit_error_rate(sig_u[i:i + PAIRS_AT_ONCE], sig_v[i:i + PAIRS_AT_ONCE],
                                          self.max_shift_frames, self.min_frames)
               for i in range(0, len(sig_u), PAIRS_AT_ONCE)]
        return np.concatenate(ber) <= self.max_bit_error_rate if ber else np.zeros(0, dtype=bool)

    def sketch_params(self) -> dict:
        return {"sketch": "hk-fingerprint", "bands": self.bands, "band_bits": self.band_bits, "seed": self.seed,
                "frames": fingerprint.FRAMES, "rate": fingerprint.RATE, "span": SPAN, "min_ones": MIN_ONES,
                "anchors": fingerprint.ANCHORS, "peak_radius": fingerprint.PEAK_RADIUS}
