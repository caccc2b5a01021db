"""Audio decoding: libsndfile (soundfile) first, FFmpeg (PyAV) for what it refuses (AAC/M4A, AC3, WMA...).

The format is read from the bytes, never the name: an Ogg file named .wav decodes as Ogg. Every file is
decoded in full and its length compared with what its header or container declares, because decoders
return short audio from a cut file without a word: a WAV's data chunk size, the frame count libsndfile
or FFmpeg read from the header (an MP3's Xing frame, an MP4's moov, a FLAC's STREAMINFO), and an Ogg
stream's pages (Ogg declares no length): a cut file ends inside a page, with fewer bytes than the page's
segment table declares, or with a last page whose CRC does not match. The end-of-stream flag is no test:
whole files written by streaming recorders and older tools lack it, and a file cut exactly at a page end
is a valid shorter stream that no test can tell from a whole one (as for compressed text, see
tasks/io/compressed.py).

A few MB of FLAC can hold hours of 8-channel 192 kHz silence (22 GB as floats), so a decode is bounded by
a sample budget (channels x frames): a header that declares more is refused before any sample is decoded,
and FFmpeg's frames are counted as they come, for the streams whose container does not say. FFmpeg opens only the
containers named in FFMPEG_CONTAINERS, told by the file's first bytes: its probe would otherwise accept
playlists (HLS, concat) that make it open other files and URLs.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np
import soundfile as sf

from tasks.io.readers import unknown_bytes

TRUNCATION_TOLERANCE_S = 0.5
MAX_SAMPLES = 2 * 48_000 * 3600  # an hour of 48 kHz stereo: what a decode may hold unless told otherwise
# FFmpeg demuxers curate uses, by the bytes a file starts with (offset, magic): all else is not opened
FFMPEG_CONTAINERS = ((4, b"ftyp", "mov"), (0, b"\x1a\x45\xdf\xa3", "matroska"),
                     (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"), (0, b"ID3", "mp3"), (0, b"\x0b\x77", "ac3"),
                     (0, b"OggS", "ogg"), (0, b"fLaC", "flac"), (0, b"RIFF", "wav"), (0, b"FORM", "aiff"),
                     (0, b"#!AMR", "amr"), (0, b"caff", "caf"))
CONTAINERS = {"mov": "MP4", "matroska": "MKV", "asf": "ASF"}  # FFmpeg's first format name -> ours


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


class Budget:
    """Counts the samples a decode holds; Undecodable past `max_samples` (collect.max_samples)."""

    def __init__(self, max_samples: int):
        self.max_samples, self.samples = max_samples, 0

    def declared(self, channels: int, rate: int, frames: int | None) -> None:
        if frames and 0 < frames < 2**62 and channels * frames > self.max_samples:
            raise Undecodable(f"the header declares {channels} channels x {rate} Hz x {frames / rate:.1f} s = "
                              f"{channels * frames} samples, over collect.max_samples ({self.max_samples}): "
                              "not decoded")

    def take(self, block: np.ndarray) -> np.ndarray:
        self.samples += block.size
        if self.samples > self.max_samples:
            raise Undecodable(f"decodes to more than collect.max_samples ({self.max_samples}) samples: not kept")
        return block


def with_soundfile(data: bytes, budget: Budget) -> Decoded:
    info = sf.info(io.BytesIO(data))  # its own handle: libsndfile's Opus reads differ after a seek to the end
    budget.declared(info.channels, info.samplerate, info.frames)
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # libsndfile knows the frames
    declared = wav_declared_frames(data) if info.format == "WAV" else info.frames
    return Decoded(budget.take(samples), rate, info.format, info.subtype.lower(), declared)


def ffmpeg_container(data: bytes) -> str:
    """The FFmpeg demuxer for `data`, from its first bytes; MPEG audio frames (MP3, ADTS AAC) by their sync."""
    for offset, magic, name in FFMPEG_CONTAINERS:
        if data[offset:offset + len(magic)] == magic:
            return name
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "aac" if data[1] & 0x06 == 0 else "mp3"
    raise ValueError("not opened: its first bytes match none of the containers curate reads with FFmpeg "
                     "(MP4/M4A, MKV/WebM, ASF/WMA, MP3, AAC, AC3, Ogg, FLAC, WAV, AIFF, AMR, CAF)")


def with_ffmpeg(data: bytes, budget: Budget) -> Decoded:
    with av.open(io.BytesIO(data), format=ffmpeg_container(data), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise Undecodable(f"no audio stream in the {container.format.name} container")
        stream = container.streams.audio[0]
        rate, channels = stream.rate, stream.channels
        declared = round(container.duration * rate / av.time_base) if container.duration else None
        budget.declared(channels, rate, declared)
        to_float = av.AudioResampler(format="fltp")
        parts = [budget.take(frame.to_ndarray()) for packet in container.demux(stream) for raw in packet.decode()
                 for frame in to_float.resample(raw)]
        parts += [frame.to_ndarray() for frame in to_float.resample(None)]
        name = container.format.name.split(",")[0]
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


def ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32 with polynomial 0x04C11DB7, not reflected, no initial or final xor."""
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ OGG_CRC_TABLE[(crc >> 24) ^ byte]
    return crc


OGG_CRC_TABLE = [0] * 256
for _i in range(256):
    _r = _i << 24
    for _ in range(8):
        _r = ((_r << 1) ^ 0x04C11DB7 if _r & 0x80000000 else _r << 1) & 0xFFFFFFFF
    OGG_CRC_TABLE[_i] = _r


def ogg_cut(data: bytes) -> str | None:
    """How an Ogg file is cut short, if it is: its pages walked by their headers, the last one checksummed."""
    if data[:4] != b"OggS":
        return None
    at, page, last = 0, 0, None
    while at < len(data):
        if data[at:at + 4] != b"OggS":  # bytes between pages: decoders resynchronise on the next capture
            at = data.find(b"OggS", at + 1)
            if at < 0:
                break
        page += 1
        header_end = at + 27 + (data[at + 26] if at + 26 < len(data) else 0)
        end = header_end + sum(data[at + 27:header_end])
        if at + 27 > len(data) or end > len(data):
            return f"the file ends inside Ogg page {page} ({len(data) - at} of its {max(end, at + 27) - at} bytes)"
        last, at = (at, end), end
    if last and ogg_crc(data[last[0]:last[0] + 22] + bytes(4) + data[last[0] + 26:last[1]]) != \
            int.from_bytes(data[last[0] + 22:last[0] + 26], "little"):
        return f"the CRC of the last Ogg page (page {page}) does not match its bytes"
    return None


def flac_declared_s(data: bytes) -> float | None:
    """Seconds a native FLAC's STREAMINFO declares (sample rate: 20 bits at byte 18; total samples: 36 bits)."""
    if data[:4] != b"fLaC" or len(data) < 26:
        return None
    bits = int.from_bytes(data[18:26], "big")
    rate, samples = bits >> 44, bits & (2 ** 36 - 1)
    return samples / rate if rate and samples else None


def reason(error: Exception) -> str:
    text = getattr(error, "error_string", None) or getattr(error, "strerror", None) or str(error)
    return text.strip().rstrip(".")


def decode(data: bytes, max_samples: int = MAX_SAMPLES) -> Decoded:
    """The whole file as float samples, or `Undecodable` naming what is wrong; at most `max_samples`
    (channels x frames) are decoded."""
    if not data:
        raise Undecodable("empty file (0 bytes)")
    try:
        decoded = with_soundfile(data, Budget(max_samples))
    except (sf.LibsndfileError, RuntimeError, TypeError) as first:
        declared_s = flac_declared_s(data)
        if declared_s and "lost sync" in reason(first):  # libFLAC's word for a stream that breaks off
            raise Undecodable(f"truncated: the FLAC stream breaks off before the {declared_s:.2f} s its STREAMINFO "
                              f"declares (libsndfile: {reason(first)})") from None
        try:
            decoded = with_ffmpeg(data, Budget(max_samples))
        except Undecodable:
            raise
        except (av.FFmpegError, ValueError, IndexError, EOFError) as second:
            raise Undecodable(f"not audio libsndfile or FFmpeg can decode (libsndfile: {reason(first)}; FFmpeg: "
                              f"{reason(second)}); {unknown_bytes(data)}") from None
    if not len(decoded.samples):
        raise Undecodable(f"{decoded.format} file with no audio samples (a header without data)")
    cut = ogg_cut(data)
    if cut:
        raise Undecodable(f"truncated: {cut} ({decoded.duration_s:.2f} s decode)")
    if decoded.declared_frames:
        declared_s = decoded.declared_frames / decoded.rate
        if declared_s - decoded.duration_s > TRUNCATION_TOLERANCE_S:
            raise Undecodable(f"truncated: the {decoded.format} header declares {declared_s:.2f} s, "
                              f"{decoded.duration_s:.2f} s decode")
    return decoded
