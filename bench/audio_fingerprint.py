"""How well the audio fingerprint tells copies from other recordings, on the shared real clips: the bit error
rate between each clip and its resampled, quieter, MP3 and cut copies, the lowest between different clips,
and how often a copy shares an LSH band with its original (what makes it a candidate).

    .venv/bin/python bench/audio_fingerprint.py
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
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


def copies(mono: np.ndarray, rate: int) -> dict[str, tuple[np.ndarray, int]]:
    mp3 = decode(make_audio_examples.encode(mono[:, None], rate, "mp3", "libmp3lame", 64_000)).samples.mean(axis=1)
    return {"resampled 22.05 kHz": (signal.resample(mono, rate, 22_050), 22_050), "8 dB quieter": (mono * 0.4, rate),
            "MP3 64 kbit/s": (mp3, rate), "cut 0.1 s + 0.05 s": (mono[rate // 10:-rate // 20], rate)}


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
    keys = {name: settings.band_keys(originals[name][None])[0] for name in names}
    print(f"{len(names)} clips of 0.5 s and more")
    for kind, pairs in by_kind.items():
        ber = np.array([bit_error_rate(originals[n][None], sig[None], 4, 16)[0] for n, sig in pairs])
        band = np.mean([(settings.band_keys(sig[None])[0] == keys[n]).any() for n, sig in pairs])
        print(f"{kind:<22} bit error rate median {np.median(ber):.3f}, max {ber.max():.3f}; "
              f"<= {settings.max_bit_error_rate}: {np.mean(ber <= settings.max_bit_error_rate):.0%}; "
              f"shares a band: {band:.0%}")
    pairs = list(itertools.combinations(names, 2))
    ber = bit_error_rate(np.stack([originals[a] for a, _ in pairs]), np.stack([originals[b] for _, b in pairs]), 4, 16)
    shared = sum((keys[a] == keys[b]).any() for a, b in pairs)
    low = sorted(zip(ber, pairs))[:3]
    print(f"different clips: {len(pairs)} pairs, {shared} share a band; lowest bit error rates: "
          + ", ".join(f"{b:.3f} ({x} / {y})" for b, (x, y) in low))


if __name__ == "__main__":
    main()
