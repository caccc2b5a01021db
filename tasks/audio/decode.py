"""Audio decoding: libsndfile (soundfile) first, FFmpeg (PyAV) for what it refuses (AAC/M4A, AC3, WMA...).

The format is read from the bytes, never the name: an Ogg file named .wav decodes as Ogg. Every file is
decoded in full and its length compared with what its header or container declares, because decoders
return short audio from a cut file without a word: a WAV's data chunk size, the frame count libsndfile
or FFmpeg read from the header (an MP3's Xing frame, an MP4's moov), and an Ogg stream's end-of-stream
page (Ogg declares no length; a cut stream has no last page).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np
import soundfile as sf

TRUNCATION_TOLERANCE_S = 0.5
CONTAINERS = {"mov": "MP4", "matroska": "MKV", "asf": "ASF"}  # FFmpeg's first format name -> ours
OGG_MAX_PAGE = 65_307


class Undecodable(ValueError):
    """A file that is not whole, readable audio; the message says why."""


@dataclass
class Decoded:
    samples: np.ndarray          # (frames, channels) float32 in [-1, 1]
    rate: int
    format: str                  # container as read from the bytes: WAV, OGG, FLAC, MP3, MP4...
    codec: str                   # pcm_16, vorbis, opus, mpeg_layer_iii, aac...
    declared_frames: int | None  # what the header says the file holds, when it says

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


def with_soundfile(data: bytes) -> Decoded:
    info = sf.info(io.BytesIO(data))
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    declared = wav_declared_frames(data) if info.format == "WAV" else info.frames
    return Decoded(samples, rate, info.format, info.subtype.lower(), declared)


def with_ffmpeg(data: bytes) -> Decoded:
    with av.open(io.BytesIO(data), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise Undecodable(f"no audio stream in the {container.format.name} container")
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="fltp")
        parts = [frame.to_ndarray() for packet in container.demux(stream) for raw in packet.decode()
                 for frame in to_float.resample(raw)]
        parts += [frame.to_ndarray() for frame in to_float.resample(None)]
        rate, channels = stream.rate, stream.channels
        name = container.format.name.split(",")[0]
        declared = round(container.duration * rate / av.time_base) if container.duration else None
        codec = stream.codec_context.name
    samples = np.concatenate(parts, axis=1).T if parts else np.zeros((0, channels), np.float32)
    return Decoded(np.ascontiguousarray(samples, dtype=np.float32), rate, CONTAINERS.get(name, name.upper()), codec,
                   declared)


def wav_declared_frames(data: bytes) -> int | None:
    """Frames the RIFF header's data chunk declares (libsndfile reports what is there, not what was declared)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    at, block = 12, None
    while at + 8 <= len(data):
        chunk, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        if chunk == b"fmt " and at + 22 <= len(data):
            block = struct.unpack("<H", data[at + 20:at + 22])[0]
        if chunk == b"data":
            return size // block if block and size not in (0, 0xFFFFFFFF) else None
        at += 8 + size + (size & 1)
    return None


def ogg_is_cut(data: bytes) -> bool:
    """An Ogg stream whose last page does not carry the end-of-stream flag."""
    if data[:4] != b"OggS":
        return False
    last = data.rfind(b"OggS", max(0, len(data) - OGG_MAX_PAGE))
    return last < 0 or len(data) < last + 6 or not data[last + 5] & 0x04


def reason(error: Exception) -> str:
    text = getattr(error, "error_string", None) or getattr(error, "strerror", None) or str(error)
    return text.strip().rstrip(".")


def decode(data: bytes) -> Decoded:
    """The whole file as float samples, or `Undecodable` naming what is wrong."""
    if not data:
        raise Undecodable("empty file (0 bytes)")
    try:
        decoded = with_soundfile(data)
    except (sf.LibsndfileError, RuntimeError, TypeError) as first:
        try:
            decoded = with_ffmpeg(data)
        except (av.FFmpegError, ValueError, IndexError, EOFError) as second:
            raise Undecodable(f"not audio libsndfile or FFmpeg can decode (libsndfile: {reason(first)}; FFmpeg: "
                              f"{reason(second)}); the file starts with {data[:16]!r}") from None
    if not len(decoded.samples):
        raise Undecodable(f"{decoded.format} file with no audio samples (a header without data)")
    if ogg_is_cut(data):
        raise Undecodable(f"truncated: the Ogg stream ends without its last page ({decoded.duration_s:.2f} s decode)")
    if decoded.declared_frames:
        declared_s = decoded.declared_frames / decoded.rate
        if declared_s - decoded.duration_s > TRUNCATION_TOLERANCE_S:
            raise Undecodable(f"truncated: the {decoded.format} header declares {declared_s:.2f} s, "
                              f"{decoded.duration_s:.2f} s decode")
    return decoded
