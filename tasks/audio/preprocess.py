"""Audio preprocessing: rules on the collected metadata first (duration, transcripts), then one decode per
surviving clip that measures everything (clipping, silence, speech, bandwidth, loudness, the dedup hash and
fingerprint) and converts it to what training reads: mono (configurable) at the target rate, loudness
normalised (optional), FLAC. The original rate, channels and format stay as columns; every rejected row
keeps the rule and the value it measured.
"""

from __future__ import annotations

import hashlib
import io
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import soundfile as sf
from pydantic import Field

from tasks.audio import fingerprint, signal
from tasks.audio.decode import decode
from tasks.records import MEDIA_TYPE, Check, Settings, concat, split_by_checks
from tasks.text.preprocess.normalise import NormaliseSettings, normalise_texts


class DurationSettings(Settings):
    enabled: bool = Field(True, description="reject clips outside the duration bounds")
    min_s: float = Field(0.5, ge=0, description="reject clips shorter than this (seconds)")
    max_s: float = Field(3600.0, gt=0, description="reject clips longer than this (seconds)")


class SilenceSettings(Settings):
    enabled: bool = Field(True, description="reject clips that are mostly silent")
    threshold_db: float = Field(-50.0, ge=-200, le=0, description="a 20 ms frame below this RMS (dBFS) is silent")
    max_share: float = Field(0.9, ge=0, le=1, description="reject clips with a larger share of silent frames")


class ClippingSettings(Settings):
    enabled: bool = Field(True, description="reject clipped clips (full-scale samples)")
    max_share: float = Field(0.01, ge=0, le=1, description="reject clips with a larger share of full-scale samples")


class SpeechSettings(Settings):
    enabled: bool = Field(True, description="measure speech_fraction with Silero VAD (the model is in the wheel)")
    measure: Literal["needed", "always"] = Field(
        "needed", description="needed: only clips a rule judges by it (all with content: speech; with content: any, "
                              "the clips the narrowband rule would reject), null elsewhere; always: every clip, for "
                              "the column, the card and dedup keep: quality. VAD is most of an audio shard's time")
    min_fraction: float = Field(0.2, ge=0, le=1, description="with content: speech, reject clips with less speech")


class NarrowbandSettings(Settings):
    """A speech-bandwidth test (telephone speech upsampled): music, piano, bird song and effects carry little
    energy up there by nature, so with `content: any` only clips that are mostly speech are judged."""
    enabled: bool = Field(True, description="reject speech whose bandwidth is below what its rate holds")
    min_rate: int = Field(16_000, ge=1_000, description="reject speech with (almost) no energy above 0.45 x this "
                                                        "rate: speech band-limited below what a recording at it holds")
    min_db: float = Field(-80.0, le=0, description="'almost no': the share of energy above the cutoff, in dB")
    min_speech_fraction: float = Field(0.5, ge=0, le=1, description="with content: any, judge only clips with at "
                                                                    "least this speech fraction (Silero VAD)")


class LoudnessSettings(Settings):
    enabled: bool = Field(True, description="normalise every clip's loudness (ITU BS.1770, pyloudnorm)")
    target_lufs: float = Field(-23.0, le=0, description="EBU R128's programme level")
    peak_db: float = Field(-1.0, le=0, description="the gain never takes the peak above this (dBFS)")
    max_gain_db: float = Field(20.0, ge=0, description="a quiet clip is raised by at most this much (its noise too)")


class TranscriptSettings(Settings):
    enabled: bool = Field(True, description="normalise transcripts and check their length and rate")
    normalise: NormaliseSettings = Field(NormaliseSettings(), description="as for text: Unicode and whitespace")
    required: bool = Field(False, description="reject clips without a transcript")
    min_chars: int = Field(1, ge=0, description="for clips that have a transcript")
    max_chars: int = Field(5_000, ge=1, description="reject clips whose transcript is longer (characters)")
    min_chars_per_s: float = Field(1.0, ge=0, description="fewer characters per second: the text misses speech")
    max_chars_per_s: float = Field(30.0, gt=0, description="more: the clip misses text (nobody speaks faster)")


class AudioPreprocessSettings(Settings):
    content: Literal["any", "speech"] = Field("any", description="speech: clips with too little voice are rejected")
    target_rate: int = Field(24_000, ge=8_000, le=192_000, description="sample rate of the curated clips")
    mono: bool = Field(True, description="mix every clip down to one channel")
    duration: DurationSettings = Field(DurationSettings(), description="duration bounds (from the collected length)")
    transcript: TranscriptSettings = Field(TranscriptSettings(), description="transcripts: normalised, length, rate")
    clipping: ClippingSettings = Field(ClippingSettings(), description="clipping (one decode for this and below)")
    silence: SilenceSettings = Field(SilenceSettings(), description="silent frames")
    speech: SpeechSettings = Field(SpeechSettings(), description="voice activity (Silero VAD)")
    narrowband: NarrowbandSettings = Field(NarrowbandSettings(), description="speech bandwidth")
    loudness: LoudnessSettings = Field(LoudnessSettings(), description="loudness normalisation of the kept clips")


def filter_metadata(table: pa.Table, settings: AudioPreprocessSettings) -> tuple[pa.Table, pa.Table]:
    """Duration from what collect decoded, then the transcript rules; nothing is decoded again."""
    duration = np.asarray(table["duration_s"], dtype=np.float64)
    d = settings.duration
    checks = [Check("audio.min_duration", d.enabled & (duration < d.min_s), np.round(duration, 3), f"< {d.min_s:g} s"),
              Check("audio.max_duration", d.enabled & (duration > d.max_s), np.round(duration, 3), f"> {d.max_s:g} s")]
    table, by_duration = split_by_checks(table, checks)
    table, by_transcript = filter_transcripts(table, settings.transcript)
    return table, concat([by_duration, by_transcript])


def filter_transcripts(table: pa.Table, settings: TranscriptSettings) -> tuple[pa.Table, pa.Table]:
    """Transcripts normalised as text is; length and speaking-rate bounds where present."""
    if not settings.enabled or table.num_rows == 0:
        return split_by_checks(table, [])
    texts = normalise_texts(table["transcript"], settings.normalise) if settings.normalise.enabled else table["transcript"]
    table = table.set_column(table.schema.get_field_index("transcript"), "transcript", texts)
    present = np.asarray(pc.is_valid(texts))
    n = np.asarray(pc.utf8_length(texts).fill_null(0), dtype=np.int64)
    rate = np.round(n / np.maximum(np.asarray(table["duration_s"], dtype=np.float64), 1e-3), 2)
    return split_by_checks(table, [
        Check("transcript.required", ~present & settings.required, np.full(len(n), "none"), ""),
        Check("transcript.min_chars", present & (n < settings.min_chars), n, f"< {settings.min_chars}"),
        Check("transcript.max_chars", present & (n > settings.max_chars), n, f"> {settings.max_chars}"),
        Check("transcript.min_chars_per_s", present & (rate < settings.min_chars_per_s), rate,
              f"< {settings.min_chars_per_s:g} chars/s"),
        Check("transcript.max_chars_per_s", present & (rate > settings.max_chars_per_s), rate,
              f"> {settings.max_chars_per_s:g} chars/s"),
    ])


def pcm_hash(mono16k: np.ndarray) -> bytes:
    """The exact-duplicate key: 16-bit PCM of the mono clip at the fixed analysis rate, so a copy in another
    container or lossless codec, or at a rate resampling maps to the same samples, matches."""
    pcm = np.round(np.clip(mono16k, -1, 1) * 32767).astype("<i2")
    return hashlib.blake2b(pcm.tobytes(), digest_size=16).digest()


def flac(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def convert(data: bytes, name: str, settings: AudioPreprocessSettings) -> dict:
    """One clip decoded once: its measurements and the converted clip (FLAC at the target rate, as `name`)."""
    decoded = decode(data)
    samples, rate = decoded.samples, decoded.rate
    mono = signal.mono_mix(samples)
    analysis = signal.resample(mono, rate, fingerprint.RATE)
    out = signal.resample(mono[:, None] if settings.mono else samples, rate, settings.target_rate)
    level, method = signal.loudness(signal.mono_mix(out), settings.target_rate)
    peak = float(np.abs(out).max())
    loud = settings.loudness
    gain_db = (signal.normalise_gain(level, peak, loud.target_lufs, loud.peak_db, loud.max_gain_db)
               if loud.enabled and peak > 0 else 0.0)
    out = np.clip(out * 10 ** (gain_db / 20), -1, 1)
    high = signal.high_band_db(mono, rate, 0.45 * settings.narrowband.min_rate)
    speech = settings.speech
    needs_speech = speech.enabled and (speech.measure == "always" or settings.content == "speech" or (
        settings.narrowband.enabled and high < settings.narrowband.min_db))
    return {
        "audio": {"bytes": flac(out, settings.target_rate), "path": name},
        "sample_rate": settings.target_rate, "channels": out.shape[1],
        "original_sample_rate": rate, "original_channels": samples.shape[1],
        "clipping_share": signal.clipping_share(samples),
        "silence_share": signal.silence_share(mono, rate, settings.silence.threshold_db),
        "speech_fraction": signal.speech_fraction(analysis) if needs_speech else None,
        "high_band_db": high,
        "loudness_db": level, "loudness_method": method, "gain_db": gain_db,
        "pcm_hash": pcm_hash(analysis), "fingerprint": fingerprint.signature(analysis),
    }


SIGNAL_TYPES = {"audio": MEDIA_TYPE, "sample_rate": pa.int32(), "channels": pa.int32(),
                "original_sample_rate": pa.int32(), "original_channels": pa.int32(), "clipping_share": pa.float32(),
                "silence_share": pa.float32(), "speech_fraction": pa.float32(), "high_band_db": pa.float32(),
                "loudness_db": pa.float32(), "loudness_method": pa.string(), "gain_db": pa.float32(),
                "pcm_hash": pa.binary(16), "fingerprint": pa.binary(fingerprint.WIDTH)}


def with_signals(table: pa.Table, settings: AudioPreprocessSettings) -> pa.Table:
    """The table with each clip converted (named `<id>.flac`) and measured; the original format moves to
    source_format."""
    measured = [convert(audio["bytes"], f"{rid}.flac", settings)
                for rid, audio in zip(table["id"].to_pylist(), table["audio"].to_pylist())]
    table = table.append_column("source_format", table["format"])
    table = table.set_column(table.schema.get_field_index("format"), "format", pa.array(["FLAC"] * table.num_rows))
    for name, kind in SIGNAL_TYPES.items():
        column = pa.array([m[name] for m in measured], kind)
        at = table.schema.get_field_index(name)
        table = table.set_column(at, name, column) if at >= 0 else table.append_column(name, column)
    return table


def filter_signals(table: pa.Table, settings: AudioPreprocessSettings) -> tuple[pa.Table, pa.Table]:
    def column(name):
        return np.asarray(table[name].fill_null(np.nan), dtype=np.float64)

    checks = []
    if settings.clipping.enabled:
        share = column("clipping_share")
        checks.append(Check("audio.clipping", share > settings.clipping.max_share, np.round(share, 4),
                            f"> {settings.clipping.max_share:g}"))
    if settings.silence.enabled:
        share = column("silence_share")
        checks.append(Check("audio.silence", share > settings.silence.max_share, np.round(share, 3),
                            f"> {settings.silence.max_share:g}"))
    if settings.content == "speech" and settings.speech.enabled:
        speech = column("speech_fraction")
        checks.append(Check("audio.speech", speech < settings.speech.min_fraction, np.round(speech, 3),
                            f"< {settings.speech.min_fraction:g}"))
    if settings.narrowband.enabled:
        n = settings.narrowband
        high = column("high_band_db")
        speech = settings.content == "speech" or column("speech_fraction") >= n.min_speech_fraction
        judged = "content: speech" if settings.content == "speech" else f"speech fraction >= {n.min_speech_fraction:g}"
        checks.append(Check("audio.narrowband", speech & (high < n.min_db), np.round(high, 1),
                            f"< {n.min_db:g} dB of the energy above {0.45 * n.min_rate:g} Hz (a speech-bandwidth "
                            f"test; {judged})"))
    return split_by_checks(table, checks)


def preprocess(table: pa.Table, settings: AudioPreprocessSettings) -> tuple[pa.Table, pa.Table]:
    """Duration and transcript rules, then one decode per survivor: measure, convert, judge."""
    table, by_metadata = filter_metadata(table, settings)
    kept, by_signal = filter_signals(with_signals(table, settings), settings)
    return kept, concat([by_metadata, by_signal])
