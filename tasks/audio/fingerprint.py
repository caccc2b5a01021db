"""An acoustic fingerprint in the manner of Haitsma and Kalker (2002): per 8 ms frame, 32 bits that say
whether the energy difference between neighbouring bands (33 log-spaced bands, 300-3000 Hz) grew or shrank
since the frame before.

The bits depend on the signs of energy differences only, so a gain change leaves them as they are;
computed at a fixed analysis rate from a mono signal, resampled copies match; lossy transcoding flips a
few percent of them; different recordings differ in about half. Frames are long (128 ms) and overlap a
lot (hop 1/16 of a frame), so a copy shifted by part of a hop still gives nearly the same bits.

A signature is 64 frames (half a second) around the clip's loudest moment, so a copy trimmed at either end
is compared at the same sound; `bit_error_rate` still tries a few frames of shift either way.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RATE = 16_000            # analysis rate: clips are resampled to it, mono, before fingerprinting
FRAME, HOP = 2048, 128   # samples at RATE: 128 ms frames every 8 ms
BANDS = 33               # band edges for 32 difference bits
LOW_HZ, HIGH_HZ = 300.0, 3000.0
FRAMES = 64              # frames in a signature ...
BEFORE = 16              # ... starting this many frames before the anchor
SMOOTH = 16              # frames of the moving average whose peak is the anchor
WIDTH = 4 + FRAMES * 4   # bytes: first and end valid frame (uint16 each), then 4 bytes per frame
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@lru_cache(maxsize=1)
def band_matrix() -> np.ndarray:
    """(FFT bins, BANDS) 0/1 matrix summing power spectrum bins into log-spaced bands."""
    freqs = np.fft.rfftfreq(FRAME, 1 / RATE)
    edges = np.geomspace(LOW_HZ, HIGH_HZ, BANDS + 1)
    return ((freqs[:, None] >= edges[None, :-1]) & (freqs[:, None] < edges[None, 1:])).astype(np.float32)


def band_bits(frames: np.ndarray) -> np.ndarray:
    """(len(frames) - 1, 32) bool: for each frame after the first, the fingerprint bits against the one before."""
    power = np.abs(np.fft.rfft(frames * np.hanning(FRAME).astype(np.float32), axis=1)) ** 2
    energy = power @ band_matrix()                                    # (frames, BANDS)
    diff = energy[:, :-1] - energy[:, 1:]                             # neighbouring bands
    return (diff[1:] - diff[:-1]) > 0                                 # against the frame before


def anchor(mono: np.ndarray, frames: int) -> int:
    """The frame at the loudest moment: frame energy (from running sums, no FFT) averaged over SMOOTH
    frames, so one click is no peak; frame 0 has no bits and is never the anchor."""
    squares = np.concatenate([[0.0], np.cumsum(mono.astype(np.float64) ** 2)])
    starts = np.arange(frames) * HOP
    smooth = np.convolve(squares[starts + FRAME] - squares[starts], np.ones(SMOOTH) / SMOOTH, mode="same")
    return int(np.argmax(smooth[1:])) + 1


def signature(mono: np.ndarray) -> bytes:
    """WIDTH bytes: the first and end frame that hold audio, then the packed bits of FRAMES frames starting
    BEFORE frames ahead of the anchor (frames outside the clip are zero and not valid). Only those frames
    are transformed, so the cost per clip does not grow with its length."""
    if len(mono) < FRAME + HOP:
        mono = np.pad(mono, (0, FRAME + HOP - len(mono)))
    windows = np.lib.stride_tricks.sliding_window_view(mono.astype(np.float32), FRAME)[::HOP]
    start = anchor(mono, len(windows)) - BEFORE
    lo, hi = max(1, start), min(len(windows), start + FRAMES)
    packed = np.zeros((FRAMES, 4), dtype=np.uint8)
    packed[lo - start:hi - start] = np.packbits(band_bits(windows[lo - 1:hi]), axis=1)
    return np.array([lo - start, hi - start], dtype=np.uint16).tobytes() + packed.tobytes()


def unpack(signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((n, FRAMES) bool valid frames, (n, FRAMES, 4) packed frames) of a (n, WIDTH) uint8 signature matrix."""
    bounds = signatures[:, :4].copy().view(np.uint16).astype(np.int64)
    at = np.arange(FRAMES)
    valid = (at[None, :] >= bounds[:, :1]) & (at[None, :] < bounds[:, 1:])
    return valid, signatures[:, 4:].reshape(len(signatures), FRAMES, 4)


def bit_error_rate(sig_u: np.ndarray, sig_v: np.ndarray, max_shift: int, min_frames: int) -> np.ndarray:
    """Per pair, the lowest share of differing bits over the frames both have, shifting one by up to
    `max_shift` frames either way; 1.0 where fewer than `min_frames` frames overlap."""
    valid_u, u = unpack(sig_u)
    valid_v, v = unpack(sig_v)
    best = np.ones(len(u))
    for shift in range(-max_shift, max_shift + 1):
        a, b = slice(max(shift, 0), FRAMES + min(shift, 0)), slice(max(-shift, 0), FRAMES - max(shift, 0))
        errors = POPCOUNT[u[:, a] ^ v[:, b]].sum(axis=2, dtype=np.int64)    # (pairs, overlap)
        valid = valid_u[:, a] & valid_v[:, b]
        frames = valid.sum(axis=1)
        rate = np.where(frames >= min_frames, (errors * valid).sum(axis=1) / np.maximum(frames * 32, 1), 1.0)
        best = np.minimum(best, rate)
    return best
