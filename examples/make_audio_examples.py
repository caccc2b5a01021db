"""Broken audio files and converted copies next to real clips, for the audio quickstart and the tests.

    python examples/make_audio_examples.py SOURCE_DIR OUT_DIR

Writes into OUT_DIR: files that must be quarantined (zero bytes, a WAV header without data, a WAV and an
Ogg file cut in half, an MP3 cut in half, HTML under an .mp3 name) and copies of real clips from
SOURCE_DIR as datasets collect them: the same audio in FLAC (of a 16-bit WAV: the same samples, an exact
duplicate; of an Ogg Vorbis clip: its float samples rounded to 16 bits, a near one), an MP3, M4A
(AAC) and Opus transcode, a copy resampled to 22.05 kHz, one 6 dB quieter, one with its silence trimmed,
and an Ogg file named .wav (not an error: it decodes as what it is). Returns {copy name: the SOURCE_DIR
clip it copies}.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

COPIES = {  # copy name -> (source clip, how)
    "side-right.flac": ("alsa_Side_Right.wav", "flac"),
    "ru_ze.flac": ("klettres_ru_alpha_ze.ogg", "flac"),
    "ru_ze-64k.mp3": ("klettres_ru_alpha_ze.ogg", "mp3"),
    "bals.m4a": ("klettres_lt_syllab_bals.ogg", "m4a"),
    "bals-22k.wav": ("klettres_lt_syllab_bals.ogg", "resample"),
    "sit-quieter.flac": ("klettres_en_syllab_sit.ogg", "gain"),
    "sit-trimmed.wav": ("klettres_en_syllab_sit.ogg", "trim"),
    "question.opus": ("oxygen_Oxygen-Sys-Question.ogg", "opus"),
    "not-really.wav": ("klettres_hu_alpha_c.ogg", "as-is"),
}
BROKEN = ("empty.wav", "header-only.wav", "cut.wav", "cut.ogg", "cut.mp3", "page.mp3")


def encode(samples: np.ndarray, rate: int, container: str, codec: str, bit_rate: int | None = None) -> bytes:
    """`samples` (frames, channels) encoded with FFmpeg, as the tools that make such copies do."""
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, "w", format=container) as c:
        stream = c.add_stream(codec, rate=48_000 if codec == "libopus" else rate)
        stream.layout = layout
        if bit_rate:
            stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, dtype=np.float32), format="fltp",
                                           layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=stream.rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


def trim_silence(samples: np.ndarray, rate: int, below_db: float = -40) -> np.ndarray:
    """Leading and trailing audio quieter than `below_db` under the peak cut away (20 ms resolution)."""
    step = rate // 50
    frames = samples[: len(samples) // step * step].reshape(-1, step, samples.shape[1])
    level = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=(1, 2))) + 1e-10)
    loud = np.nonzero(level >= level.max() + below_db)[0]
    return samples[loud[0] * step:(loud[-1] + 1) * step]


def make_copy(source: Path, how: str) -> bytes:
    data = source.read_bytes()
    if how == "as-is":
        return data
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    out = io.BytesIO()
    if how == "flac":
        sf.write(out, samples, rate, format="FLAC", subtype="PCM_16")
    elif how == "resample":
        sf.write(out, soxr.resample(samples, rate, 22_050), 22_050, format="WAV", subtype="PCM_16")
    elif how == "gain":
        sf.write(out, samples * 0.5, rate, format="FLAC", subtype="PCM_16")
    elif how == "trim":
        sf.write(out, trim_silence(samples, rate), rate, format="WAV", subtype="PCM_16")
    else:
        container, codec, bit_rate = {"mp3": ("mp3", "libmp3lame", 64_000), "m4a": ("ipod", "aac", 96_000),
                                      "opus": ("ogg", "libopus", 64_000)}[how]
        return encode(samples, rate, container, codec, bit_rate)
    return out.getvalue()


def make_broken(source_dir: Path, out: Path) -> None:
    wav = (source_dir / "alsa_Side_Right.wav").read_bytes()
    ogg = (source_dir / "klettres_hu_syllab_36-ven.ogg").read_bytes()
    samples, rate = sf.read(source_dir / "klettres_de_syllab_ein.ogg", dtype="float32", always_2d=True)
    mp3 = encode(samples, rate, "mp3", "libmp3lame", 64_000)
    (out / "empty.wav").write_bytes(b"")
    (out / "header-only.wav").write_bytes(wav[:44])
    (out / "cut.wav").write_bytes(wav[: len(wav) // 2])
    (out / "cut.ogg").write_bytes(ogg[: len(ogg) // 2])
    (out / "cut.mp3").write_bytes(mp3[: len(mp3) // 2])
    (out / "page.mp3").write_text("<!doctype html><html><body>404 Not Found</body></html>\n")


def make(source_dir: Path, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    make_broken(source_dir, out)
    for name, (clip, how) in COPIES.items():
        (out / name).write_bytes(make_copy(source_dir / clip, how))
    return {name: clip for name, (clip, _) in COPIES.items()}


if __name__ == "__main__":
    print(make(Path(sys.argv[1]), Path(sys.argv[2])))
