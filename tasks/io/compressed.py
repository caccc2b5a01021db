"""Decompressing readers that never end a cut file quietly.

gzip, bz2 and xz readers raise EOFError when the stream stops before its end marker. zstandard's stream
reader does not: a file cut inside a frame just ends, and the records after the cut vanish. `ZstdReader`
reads every frame of a file and raises EOFError when the last one is incomplete.

A file cut exactly between two frames (or two gzip members) is a valid stream of fewer frames: no
format can tell it from a whole file. The line readers still notice when such a cut falls inside a line.

Decompression bombs: gzip, bz2 and xz return at most what `read1` asks for. A zstd decompressor returns
all that its input holds (up to 32,768 bytes per byte: an 8 KB file is 256 MiB), so `ZstdReader` feeds it
ZSTD_STEP bytes at a time, which bounds what one call can yield to 64 MiB. `Capped` ends any stream past
a number of bytes with `TooLarge`, naming the setting that set the cap.
"""

from __future__ import annotations

import io

import zstandard
from fsspec.compression import compr

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2", ".xz": "xz"}


ZSTD_STEP = 2048  # compressed bytes per decompress call: at most 2048 x 32768 = 64 MiB out


class TooLarge(ValueError):
    """A stream, line or file beyond the cap its setting names."""


class Read1Stream(io.RawIOBase):
    """A readable binary stream made of its `read1`: `readinto` (what io's `read` calls) takes from it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.read1(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class ZstdReader(Read1Stream):
    """A binary stream of the concatenated frames of a zstd file; EOFError if it ends inside a frame."""

    def __init__(self, raw, chunk_bytes: int = 1 << 16):
        self.raw, self.chunk_bytes = raw, chunk_bytes
        self.decompressor = zstandard.ZstdDecompressor()
        self.frame = self.decompressor.decompressobj()
        self.in_frame = False  # bytes of the current frame were read and its end was not reached yet
        self.frames, self.pending, self.taken = 0, b"", 0
        self.compressed = memoryview(b"")  # read from `raw`, not yet decompressed

    def read1(self, size: int = -1) -> bytes:
        """Up to `size` of the next decompressed bytes (b"" at the end of the file). What one decompress call
        gave is handed out by offset, never re-sliced from its start, so a long output costs linear time."""
        while self.taken >= len(self.pending):
            if not self.compressed:
                self.compressed = memoryview(self.raw.read(self.chunk_bytes))
                if not self.compressed:
                    if self.in_frame:
                        raise EOFError(f"the file ends inside zstd frame {self.frames + 1}: it was cut short")
                    return b""
            step, self.compressed = self.compressed[:ZSTD_STEP], self.compressed[ZSTD_STEP:]
            self.pending, self.taken = self.decompress(bytes(step)), 0
        size = len(self.pending) - self.taken if size is None or size < 0 else size
        out = self.pending[self.taken:self.taken + size]
        self.taken += len(out)
        return out

    def decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            self.in_frame = True
            out.append(self.frame.decompress(data))
            if not self.frame.eof:
                break
            self.frames, self.in_frame = self.frames + 1, False
            data = self.frame.unused_data
            self.frame = self.decompressor.decompressobj()
        return b"".join(out)


class Capped(Read1Stream):
    """`raw` (a stream with `read1` or `read`) that raises TooLarge once more than `limit` bytes came out."""

    def __init__(self, raw, limit: int, setting: str):
        self.raw, self.limit, self.setting, self.passed = raw, limit, setting, 0
        self._read = getattr(raw, "read1", raw.read)

    def read1(self, size: int = -1) -> bytes:
        data = self._read(size)
        self.passed += len(data)
        if self.passed > self.limit:
            raise TooLarge(f"more than {self.limit} bytes (the cap {self.setting})")
        return data

    def read(self, size: int = -1) -> bytes:
        """`size` bytes (all, if negative) or fewer at the end: read1 may return less than it is asked."""
        parts, wanted = [], size
        while wanted and (data := self.read1(1 << 16 if wanted < 0 else min(wanted, 1 << 16))):
            parts.append(data)
            wanted = wanted - len(data) if wanted > 0 else wanted
        return b"".join(parts)


def decompressing(raw, compression: str | None):
    """`raw` (a binary file) read through its compression, if any."""
    if compression is None:
        return raw
    if compression == "zstd":
        return ZstdReader(raw)
    return compr[compression](raw, mode="rb")
