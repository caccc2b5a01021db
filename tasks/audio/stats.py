"""What the manifest, card and report show of an audio dataset: hours per split, durations, source sample
rates and formats, loudness and speech fraction; clips as a waveform and a spectrogram picture."""

from __future__ import annotations

import base64
import io
from collections import Counter
from html import escape

import numpy as np
import pyarrow as pa
from PIL import Image

from tasks.audio import signal
from tasks.audio.decode import decode
from tasks.export import load_snippet
from tasks.export.report import bar_chart

DURATION_EDGES = (0, 1, 2, 5, 10, 30, 60, 300, 1800)  # seconds
DURATION_BINS = tuple(f"{lo}-{hi} s" for lo, hi in zip(DURATION_EDGES, DURATION_EDGES[1:])) + (f">={DURATION_EDGES[-1]} s",)
SPEECH_BINS = ("0-0.2", "0.2-0.5", "0.5-0.8", "0.8-1")
PICTURE_W, WAVE_H, SPECTRUM_H = 240, 48, 64


def binned(values: np.ndarray, edges, labels) -> dict:
    at = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(labels) - 1)
    return {labels[i]: int(n) for i, n in enumerate(np.bincount(at, minlength=len(labels))) if n}


def moments(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    return {"count": int(len(values)), "sum": float(values.sum()), "sumsq": float((values ** 2).sum())}


def of_table(table: pa.Table) -> dict:
    """Additive statistics of exported rows: seconds per split, bins and counts, loudness moments."""
    duration = np.asarray(table["duration_s"], dtype=np.float64)
    seconds = Counter()
    for split, d in zip(table["split"].to_pylist(), duration):
        seconds[split] += float(d)
    speech = np.asarray(table["speech_fraction"].fill_null(np.nan), dtype=np.float64)
    return {"seconds": {k: round(v, 3) for k, v in seconds.items()},
            "durations": binned(duration, DURATION_EDGES, DURATION_BINS),
            "source_rates": {str(k): v for k, v in Counter(table["original_sample_rate"].to_pylist()).items()},
            "source_formats": dict(Counter(table["source_format"].to_pylist())),
            "speech": binned(speech[np.isfinite(speech)], (0, 0.2, 0.5, 0.8), SPEECH_BINS),
            "loudness_db": moments(np.asarray(table["loudness_db"], dtype=np.float64))}


def hours(manifest: dict) -> dict:
    return {split: round(s / 3600, 4) for split, s in manifest.get("seconds", {}).items()}


def charts(manifest: dict) -> list[str]:
    loud = manifest.get("loudness_db") or {}
    level = (f"<p>Loudness of the sources before normalisation: mean {loud['mean']} dB (LUFS, or RMS dBFS for "
             f"clips under 0.4 s), std {loud['std']}</p>" if "mean" in loud else "")
    durations = manifest.get("durations", {})
    speech = manifest.get("speech", {})
    return [bar_chart("Hours per split (this version)", list(hours(manifest).items()), "#4c78a8"),
            bar_chart("Clip duration (this version)", [(b, durations[b]) for b in DURATION_BINS if durations.get(b)],
                      "#59a14f"),
            bar_chart("Source sample rate, Hz (this version)",
                      sorted(manifest.get("source_rates", {}).items(), key=lambda kv: int(kv[0])), "#76b7b2"),
            bar_chart("Source format (this version)", Counter(manifest.get("source_formats", {})).most_common(),
                      "#edc948"),
            bar_chart("Speech fraction (Silero VAD, this version)", [(b, speech[b]) for b in SPEECH_BINS if speech.get(b)],
                      "#b07aa1") + level]


def card(manifest: dict) -> str:
    config = manifest.get("config", {})
    pre, export = config.get("preprocess", {}), config.get("export", {})
    rate = pre.get("target_rate", 24_000)
    per_split = "\n".join(f"| {split} | {h} |" for split, h in hours(manifest).items())
    mel = export.get("log_mel", {})
    spectra = (f"\n\nEach row also holds `log_mel`, a float16 log-mel spectrogram ({mel.get('n_mels', 80)} mels, "
               f"hop {mel.get('hop', 256)} samples) flattened, and its `[n_mels, frames]` shape in `log_mel_shape`: "
               "`np.asarray(row['log_mel'], np.float16).reshape(row['log_mel_shape'])`." if mel.get("enabled") else "")
    loader = """from datasets import Audio, load_dataset

train = load_dataset("parquet", data_files=files, split="train")  # `audio` is an Audio feature, %d Hz FLAC
# datasets >= 4 decodes Audio with torchcodec (pip install torch torchcodec); without it, read the bytes:
import io, soundfile
train = train.cast_column("audio", Audio(decode=False))
samples, rate = soundfile.read(io.BytesIO(train[0]["audio"]["bytes"]), dtype="float32")""" % rate
    return (f"## Audio\nFLAC, {'mono' if pre.get('mono', True) else 'channels as recorded'}, {rate} Hz"
            f"{', loudness normalised to ' + str(pre.get('loudness', {}).get('target_lufs', -23)) + ' LUFS' if pre.get('loudness', {}).get('enabled', True) else ''}."
            f"{spectra}\n\n| split | hours |\n|---|---|\n{per_split}\n\n## Load it\n{load_snippet(manifest, loader)}")


def picture(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(out.getvalue()).decode()}">'


def waveform(mono: np.ndarray) -> np.ndarray:
    """(WAVE_H, PICTURE_W) grey picture: the min..max envelope of each column's samples."""
    columns = np.array_split(mono, PICTURE_W) if len(mono) >= PICTURE_W else [mono[i:i + 1] for i in range(len(mono))]
    pixels = np.full((WAVE_H, PICTURE_W), 255, dtype=np.uint8)
    mid = (WAVE_H - 1) / 2
    for x, part in enumerate(columns):
        if len(part):
            top, bottom = round(mid - part.max() * mid), round(mid - part.min() * mid)
            pixels[max(0, top):min(WAVE_H, bottom + 1), x] = 40
    return pixels


def spectrogram(mono: np.ndarray, rate: int) -> np.ndarray:
    """(SPECTRUM_H, PICTURE_W) picture of log power, low frequencies at the bottom, 80 dB of range."""
    n_fft = 256
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    hop = max(1, (len(mono) - n_fft) // PICTURE_W + 1)
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop][:PICTURE_W]
    level = 10 * np.log10(np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2 + 1e-12)
    level = np.clip((level - level.max() + 80) / 80, 0, 1)
    rows = np.linspace(0, level.shape[1] - 1, SPECTRUM_H).astype(int)[::-1]
    grey = (255 * (1 - level[:, rows].T)).astype(np.uint8)
    return np.array(Image.fromarray(grey).resize((PICTURE_W, SPECTRUM_H), Image.Resampling.NEAREST))


def example(row: dict) -> str:
    """A clip as its waveform and spectrogram, with duration, rate and transcript."""
    audio = row.get("audio") or {}
    try:
        clip = decode(audio.get("bytes") or b"")
        mono = signal.mono_mix(clip.samples)
        pictures = picture(waveform(mono)) + picture(spectrogram(mono, clip.rate))
    except Exception as e:  # a report shows what it can
        pictures = f"<p>(no preview: {escape(str(e))})</p>"
    about = f"{row.get('duration_s') or 0:.2f} s, {row.get('sample_rate')} Hz {row.get('format') or ''}"
    text = f"<p>{escape(row['transcript'][:120])}</p>" if row.get("transcript") else ""
    return f"{pictures}<p>{escape(about)}</p>{text}"
