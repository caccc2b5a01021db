"""An acoustic fingerprint in the manner of Haitsma and Kalker (2002): per 8 ms frame, 32 bits that say
whether the energy difference between neighbouring bands (33 log-spaced bands, 300-3000 Hz) grew or shrank
since the frame before.

The bits depend on the signs of energy differences only, so a gain change leaves them as they are;
computed at a fixed analysis rate from a mono signal, resampled copies match; lossy transcoding flips a
few percent of them; different recordings differ in about half. Frames are long (128 ms) and overlap a
lot (hop 1/16 of a frame), so a copy shifted by part of a hop still gives nearly the same bits.

A signature holds ANCHORS windows of 64 frames (half a second), each around one of the clip's loudest
moments: the loudest frames that are the loudest within PEAK_RADIUS frames either way. Whether a frame is
such a peak depends only on the sound near it, so a copy trimmed at either end keeps every peak away from
the cut, and one of its windows meets one of the original's at the same sound; `bit_error_rate` compares
every window of one clip with every window of the other, offset by up to `max_shift` frames either way
(a trimmed copy's window may sit well away from the original's on the same sound).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RATE = 16_000            # analysis rate: clips are resampled to it, mono, before fingerprinting
FRAME, HOP = 2048, 128   # samples at RATE: 128 ms frames every 8 ms
BANDS = 33               # band edges for 32 difference bits
LOW_HZ, HIGH_HZ = 300.0, 3000.0
FRAMES = 64              # frames in a window ...
BEFORE = 16              # ... starting this many frames before its anchor
SMOOTH = 16              # frames of the moving average whose peaks are the anchors
ANCHORS = 4              # windows per signature, loudest first
PEAK_RADIUS = 32         # an anchor is the loudest frame within this many frames (a quarter second) either way
WINDOW = 4 + FRAMES * 4  # bytes of a window: first and end valid frame (uint16 each), then 4 bytes per frame
WIDTH = ANCHORS * WINDOW
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@lru_cache(maxsize=1)
def band_matrix() -> np.ndarray:
    """(FFT bins, BANDS) 0/1 matrix summing power spectrum bins into log-spaced bands."""
    freqs = np.fft.rfftfreq(FRAME, 1 / RATE)
    edges = np.geomspace(LOW_HZ, HIGH_HZ, BANDS + 1)
    return ((freqs[:, None] >= edges[None, :-1]) & (freqs[:, None] < edges[None, 1:])).astype(np.float32)


def band_energy(frames: np.ndarray) -> np.ndarray:
    """(len(frames), BANDS) energy of each frame in each band."""
    import scipy.fft  # here, not at the top (0.2 s of import); its float32 transform is 2x numpy's float64 one

    power = np.abs(scipy.fft.rfft(frames * np.hanning(FRAME).astype(np.float32), axis=1)) ** 2
    return power @ band_matrix()


def band_bits(energy: np.ndarray) -> np.ndarray:
    """(len(energy) - 1, 32) bool: for each frame after the first, the fingerprint bits against the one before."""
    diff = energy[:, :-1] - energy[:, 1:]                             # neighbouring bands
    return (diff[1:] - diff[:-1]) > 0                                 # against the frame before


def anchors(mono: np.ndarray, frames: int) -> list[int]:
    """Up to ANCHORS frames, loudest first, each the loudest within PEAK_RADIUS frames either way and that far
    from a louder one. Loudness is frame energy (from running sums, no FFT) averaged over SMOOTH frames, so
    one click is no peak; frame 0 has no bits and is never an anchor; a silent clip's anchor is frame 1."""
    from scipy.ndimage import maximum_filter1d

    squares = np.concatenate([[0.0], np.cumsum(mono.astype(np.float64) ** 2)])
    starts = np.arange(frames) * HOP
    smooth = np.convolve(squares[starts + FRAME] - squares[starts], np.ones(SMOOTH) / SMOOTH, mode="same")
    smooth[0] = 0.0
    peaks = np.flatnonzero((smooth == maximum_filter1d(smooth, 2 * PEAK_RADIUS + 1, mode="constant")) & (smooth > 0))
    chosen: list[int] = []
    for frame in peaks[np.argsort(-smooth[peaks], kind="stable")].tolist():
        if all(abs(frame - c) > PEAK_RADIUS for c in chosen):  # a plateau's equal frames are one peak
            chosen.append(frame)
            if len(chosen) == ANCHORS:
                break
    return chosen or [1]


def signature(mono: np.ndarray) -> bytes:
    """WIDTH bytes: per anchor window, the first and end frame that hold audio, then the packed bits of
    FRAMES frames starting BEFORE frames ahead of the anchor (frames outside the clip are zero and not
    valid); windows past the anchors found are empty. Only the windows' frames are transformed, so the cost
    per clip does not grow with its length."""
    if len(mono) < FRAME + HOP:
        mono = np.pad(mono, (0, FRAME + HOP - len(mono)))
    windows = np.lib.stride_tricks.sliding_window_view(mono.astype(np.float32), FRAME)[::HOP]
    spans = [(max(1, at - BEFORE), min(len(windows), at - BEFORE + FRAMES), at - BEFORE)
             for at in anchors(mono, len(windows))]
    needed = np.unique(np.concatenate([np.arange(lo - 1, hi) for lo, hi, _ in spans]))
    energy = band_energy(windows[needed])
    out = np.zeros((ANCHORS, WINDOW), dtype=np.uint8)
    for slot, (lo, hi, start) in enumerate(spans):
        bits = band_bits(energy[np.searchsorted(needed, lo - 1):np.searchsorted(needed, hi)])
        out[slot, :4] = np.array([lo - start, hi - start], dtype=np.uint16).view(np.uint8)
        out[slot, 4 + 4 * (lo - start):4 + 4 * (hi - start)] = np.packbits(bits, axis=1).ravel()
    return out.tobytes()


def unpack(signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((n, ANCHORS, FRAMES) bool valid frames, (n, ANCHORS, FRAMES, 4) packed frames) of (n, WIDTH) uint8."""
    windows = signatures.reshape(len(signatures), ANCHORS, WINDOW)
    bounds = windows[:, :, :4].copy().view(np.uint16).astype(np.int64)   # (n, ANCHORS, 2)
    at = np.arange(FRAMES)
    valid = (at >= bounds[:, :, :1]) & (at < bounds[:, :, 1:])
    return valid, windows[:, :, 4:].reshape(len(signatures), ANCHORS, FRAMES, 4)


def bit_error_rate(sig_u: np.ndarray, sig_v: np.ndarray, max_shift: int, min_frames: int) -> np.ndarray:
    """Per pair, the lowest share of differing bits over the frames two windows both have, for every window of
    one with every window of the other, shifting one by up to `max_shift` frames either way; 1.0 where no
    two windows overlap in `min_frames` frames."""
    valid_u, u = unpack(sig_u)
    valid_v, v = unpack(sig_v)
    best = np.ones(len(u))
    for i in range(ANCHORS):
        for j in range(ANCHORS):
            if valid_u[:, i].any() and valid_v[:, j].any():
                best = np.minimum(best, _window_error_rate(valid_u[:, i], u[:, i], valid_v[:, j], v[:, j],
                                                           max_shift, min_frames))
    return best


def _window_error_rate(valid_u: np.ndarray, u: np.ndarray, valid_v: np.ndarray, v: np.ndarray,
                       max_shift: int, min_frames: int) -> np.ndarray:
    best = np.ones(len(u))
    for shift in range(-max_shift, max_shift + 1):
        a, b = slice(max(shift, 0), FRAMES + min(shift, 0)), slice(max(-shift, 0), FRAMES - max(shift, 0))
        errors = POPCOUNT[u[:, a] ^ v[:, b]].sum(axis=2, dtype=np.int64)    # (pairs, overlap)
        valid = valid_u[:, a] & valid_v[:, b]
        frames = valid.sum(axis=1)
        rate = np.where(frames >= min_frames, (errors * valid).sum(axis=1) / np.maximum(frames * 32, 1), 1.0)
        best = np.minimum(best, rate)
    return best
