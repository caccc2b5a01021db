"""How well the audio fingerprint tells copies from other recordings, on the shared real clips: the bit error
rate between each clip and its resampled, quieter, MP3 and cut copies and its copies trimmed at the start by
0.1, 0.25 and 0.5 s and by 10% and 30%; whether a copy shares a band key with its original and passes
verification (what makes the pipeline find it); the lowest bit error rates between different clips.

    .venv/bin/python bench/audio_fingerprint.py
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
from media import SHARED

from tasks.audio import signal
from tasks.audio.decode import decode
from tasks.audio.dedup import AudioDedupSettings
from tasks.audio.fingerprint import RATE, bit_error_rate, signature

_spec = importlib.util.spec_from_file_location(
    "make_audio_examples", Path(__file__).resolve().parents[1] / "examples" / "make_audio_examples.py")
make_audio_examples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_audio_examples)


def fingerprint(mono: np.ndarray, rate: int) -> np.ndarray:
    return np.frombuffer(signature(signal.resample(mono, rate, RATE)), np.uint8)


TRIMS = {"start -0.1 s": 0.1, "start -0.25 s": 0.25, "start -0.5 s": 0.5, "start -10%": "10%", "start -30%": "30%"}
MIN_LEFT_S = 0.5  # a trim is measured on the clips it leaves at least this long


def copies(mono: np.ndarray, rate: int) -> dict[str, tuple[np.ndarray, int]]:
    mp3 = decode(make_audio_examples.encode(mono[:, None], rate, "mp3", "libmp3lame", 64_000)).samples.mean(axis=1)
    found = {"resampled 22.05 kHz": (signal.resample(mono, rate, 22_050), 22_050), "8 dB quieter": (mono * 0.4, rate),
             "MP3 64 kbit/s": (mp3, rate), "cut 0.1 s + 0.05 s": (mono[rate // 10:-rate // 20], rate)}
    for kind, trim in TRIMS.items():
        cut = round(len(mono) * int(trim[:-1]) / 100) if isinstance(trim, str) else round(trim * rate)
        if len(mono) - cut >= MIN_LEFT_S * rate:
            found[kind] = (mono[cut:], rate)
    return found


def band_keys(settings: AudioDedupSettings, sig: np.ndarray) -> list[set[int]]:
    """Per band, the keys of the clip's windows that have enough frames (what the dedup sketch emits)."""
    table = pa.table({"fingerprint": pa.array([sig.tobytes()], pa.binary(len(sig))),
                      "pcm_hash": pa.array([b"\0" * 16], pa.binary(16)), "original_sample_rate": [RATE],
                      "duration_s": [1.0]})
    sketch = settings.sketch(table)
    return [set(sketch.near[0, band][sketch.has_near[0]].tolist()) for band in range(settings.bands)]


def shares_a_band(a: list[set[int]], b: list[set[int]]) -> bool:
    return any(x & y for x, y in zip(a, b))


def main() -> None:
    settings = AudioDedupSettings()
    originals, by_kind = {}, {}
    for path in sorted((SHARED / "audio").iterdir()):
        clip = decode(path.read_bytes())
        if clip.duration_s < 0.5:
            continue
        mono = clip.samples.mean(axis=1)
        originals[path.name] = fingerprint(mono, clip.rate)
        for kind, (samples, rate) in copies(mono, clip.rate).items():
            by_kind.setdefault(kind, []).append((path.name, fingerprint(samples, rate)))
    names = list(originals)
    keys = {name: band_keys(settings, originals[name]) for name in names}
    shift, frames = settings.max_shift_frames, settings.min_frames
    print(f"{len(names)} clips of 0.5 s and more; windows shifted by up to {shift} frames")
    for kind, pairs in by_kind.items():
        ber = np.array([bit_error_rate(originals[n][None], sig[None], shift, frames)[0] for n, sig in pairs])
        band = np.mean([shares_a_band(band_keys(settings, sig), keys[n]) for n, sig in pairs])
        found = np.mean([shares_a_band(band_keys(settings, sig), keys[n]) and b <= settings.max_bit_error_rate
                         for (n, sig), b in zip(pairs, ber)])
        print(f"{kind:<20} {len(pairs):>3} clips, bit error rate median {np.median(ber):.3f}, max {ber.max():.3f}; "
              f"<= {settings.max_bit_error_rate}: {np.mean(ber <= settings.max_bit_error_rate):.0%}; "
              f"shares a band: {band:.0%}; found: {found:.0%}")
    pairs = list(itertools.combinations(names, 2))
    ber = bit_error_rate(np.stack([originals[a] for a, _ in pairs]), np.stack([originals[b] for _, b in pairs]),
                         shift, frames)
    shared = sum(shares_a_band(keys[a], keys[b]) for a, b in pairs)
    low = sorted(zip(ber, pairs))[:3]
    print(f"different clips: {len(pairs)} pairs, {shared} share a band; lowest bit error rates: "
          + ", ".join(f"{b:.3f} ({x} / {y})" for b, (x, y) in low))


if __name__ == "__main__":
    main()
