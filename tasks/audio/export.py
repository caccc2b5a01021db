"""Training-ready clips: the FLAC preprocess wrote at the target rate, and optionally a log-mel spectrogram
per clip for models that train on spectrograms (natural log of the mel power, floored at 1e-5, stored as
float16 with its [n_mels, frames] shape; the mel filters are Slaney's, as librosa and torchaudio's
defaults make them).
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import pyarrow as pa
import soundfile as sf
from pydantic import Field

from tasks.audio import signal
from tasks.export import MediaExportSettings
from tasks.records import Settings


class LogMelSettings(Settings):
    enabled: bool = Field(False, description="add log_mel (float16) and log_mel_shape columns")
    n_mels: int = Field(80, ge=8, le=512, description="mel bands")
    n_fft: int = Field(1024, ge=64, description="FFT size in samples")
    window: int = Field(1024, ge=16, description="window length in samples (<= n_fft)")
    hop: int = Field(256, ge=1, description="hop length in samples")
    f_min: float = Field(0.0, ge=0, description="lowest frequency of the mel filters (Hz)")
    f_max: float | None = Field(None, gt=0, description="highest frequency of the mel filters (Hz); default: half the "
                                                       "sample rate")


class AudioExportSettings(MediaExportSettings):
    log_mel: LogMelSettings = Field(LogMelSettings(), description="optional log-mel spectrogram columns")


def hz_to_mel(f):
    """Slaney's scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15, 200 * m / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))


@lru_cache(maxsize=8)
def mel_filters(rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, area-normalised."""
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return (np.maximum(0, np.minimum(lower, upper)) * (2 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def log_mel(mono: np.ndarray, rate: int, s: LogMelSettings) -> np.ndarray:
    """(n_mels, frames) log-mel spectrogram; frames are centred (the signal is reflect-padded by n_fft/2)."""
    padded = np.pad(mono, s.n_fft // 2, mode="reflect" if len(mono) > s.n_fft // 2 else "constant")
    if len(padded) < s.n_fft:
        padded = np.pad(padded, (0, s.n_fft - len(padded)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, s.n_fft)[::s.hop]
    window = np.zeros(s.n_fft, dtype=np.float32)
    start = (s.n_fft - s.window) // 2
    window[start:start + s.window] = np.hanning(s.window + 1)[:-1]  # periodic Hann, centred in the FFT
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = mel_filters(rate, s.n_fft, s.n_mels, s.f_min, s.f_max or rate / 2) @ power.T
    return np.log(np.maximum(mel, 1e-5))


def prepare_export(table: pa.Table, settings: AudioExportSettings) -> pa.Table:
    """The clips as preprocess made them, plus their log-mel spectrograms when asked for."""
    if not settings.log_mel.enabled:
        return table
    spectra, shapes = [], []
    for audio in table["audio"].to_pylist():
        samples, rate = sf.read(io.BytesIO(audio["bytes"]), dtype="float32", always_2d=True)
        spectrum = log_mel(signal.mono_mix(samples), rate, settings.log_mel).astype(np.float16)
        spectra.append(pa.array(spectrum.ravel(), pa.float16()))
        shapes.append(list(spectrum.shape))
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in spectra])]).astype(np.int32)
    values = pa.concat_arrays(spectra) if spectra else pa.array([], pa.float16())
    return (table.append_column("log_mel", pa.ListArray.from_arrays(pa.array(offsets), values))
            .append_column("log_mel_shape", pa.array(shapes, pa.list_(pa.int32()))))
