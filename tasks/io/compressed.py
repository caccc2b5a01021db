"""Decompressing readers that never end a cut file quietly.

gzip, bz2 and xz readers raise EOFError when the stream stops before its end marker. zstandard's stream
reader does not: a file cut inside a frame just ends, and the records after the cut vanish. `ZstdReader`
reads every frame of a file and raises EOFError when the last one is incomplete.

A file cut exactly between two frames (or two gzip members) is a valid stream of fewer frames: no
format can tell it from a whole file. The line readers still notice when such a cut falls inside a line.
"""

from __future__ import annotations

import io

import zstandard
from fsspec.compression import compr

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2", ".xz": "xz"}


class ZstdReader(io.RawIOBase):
    """A binary stream of the concatenated frames of a zstd file; EOFError if it ends inside a frame."""

    def __init__(self, raw, chunk_bytes: int = 1 << 16):
        self.raw, self.chunk_bytes = raw, chunk_bytes
        self.decompressor = zstandard.ZstdDecompressor()
        self.frame = self.decompressor.decompressobj()
        self.in_frame = False  # bytes of the current frame were read and its end was not reached yet
        self.frames, self.pending = 0, b""

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        """Up to `size` of the next decompressed bytes (b"" at the end of the file)."""
        while not self.pending:
            data = self.raw.read(self.chunk_bytes)
            if not data:
                if self.in_frame:
                    raise EOFError(f"the file ends inside zstd frame {self.frames + 1}: it was cut short")
                return b""
            self.pending = self.decompress(data)
        size = len(self.pending) if size is None or size < 0 else size
        out, self.pending = self.pending[:size], self.pending[size:]
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

    def readinto(self, buffer) -> int:
        data = self.read1(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def decompressing(raw, compression: str | None):
    """`raw` (a binary file) read through its compression, if any."""
    if compression is None:
        return raw
    if compression == "zstd":
        return ZstdReader(raw)
    return compr[compression](raw, mode="rb")
