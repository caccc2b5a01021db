"""Sentence vectors of a local fastText model (`.bin` of `fasttext skipgram` or `cbow`), read with NumPy.

curate's fastText runtime (fasttext-predict) predicts labels only; `fasttext` has no wheel for Python 3.11,
and `fasttext-wheel` 0.9.2 fails to predict under NumPy 2 and would replace fasttext-predict's module. The
`.bin` format is small and stable (version 12): arguments, the dictionary, then the input matrix, which is
memory-mapped, so a 7 GB Common Crawl model costs only the rows a shard's words touch. The vectors are fastText's `get_sentence_vector`: a word's vector is the mean of its row (if in the
vocabulary) and the rows of its character n-grams (FNV-1a hashed into `bucket` rows); a text's is the mean
of its words' unit vectors. Whitespace (ASCII, as fastText's) separates words, newlines included; the
result is L2-normalised for cosines.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse

MAGIC, VERSION = 793712314, 12
MODELS = {1: "cbow", 2: "skipgram", 3: "supervised"}


class FastTextModelError(ValueError):
    """The file is not an unsupervised, unquantised fastText model: the message names the file."""


class FastTextVectors:
    def __init__(self, path: str):
        self.path = str(Path(path).expanduser())
        try:
            with open(self.path, "rb") as f:
                head = f.read(8 + 12 * 4 + 8)
                if len(head) < 64 or struct.unpack("<2i", head[:8]) != (MAGIC, VERSION):
                    raise FastTextModelError(f"{path}: not a fastText model (.bin, format version {VERSION})")
                dim, _, _, _, _, _, _, model, self.bucket, self.minn, self.maxn, _ = struct.unpack("<12i", head[8:56])
                if model not in (1, 2):
                    raise FastTextModelError(f"{path}: a {MODELS.get(model, model)} model; sentence vectors need "
                                             "one trained without labels (fasttext skipgram or cbow)")
                words, self.nwords, offset = _dictionary(f, path)
                f.seek(offset)
                quantised, rows, cols = struct.unpack("<?qq", f.read(17).ljust(17, b"\0"))
                size = f.seek(0, 2)
        except OSError as e:
            raise FastTextModelError(f"{path}: {e.strerror or e}") from None
        if quantised:
            raise FastTextModelError(f"{path}: a quantised model (.ftz); give the .bin it was quantised from")
        if (rows, cols) != (self.nwords + self.bucket, dim) or size < offset + 17 + rows * cols * 4:
            raise FastTextModelError(f"{path}: input matrix cut short or of the wrong shape ({rows} x {cols} in "
                                     f"{size:,} bytes; {self.nwords + self.bucket} x {dim} expected)")
        self.words = pa.array(words[:self.nwords], pa.string())
        self.input = np.memmap(self.path, np.float32, "r", offset + 17, (rows, cols))

    def __reduce__(self):  # a task gets the path and maps the file itself
        return FastTextVectors, (self.path,)

    @property
    def dims(self) -> int:
        return self.input.shape[1]

    def embed(self, texts: pa.Array) -> np.ndarray:
        """(documents, dims) float32, each of length 1 (0 for a text without words)."""
        tokens = pc.ascii_split_whitespace(texts.fill_null(""))
        encoded = pc.dictionary_encode(pc.list_flatten(tokens))
        unique = encoded.dictionary
        vectors = self.word_vectors(unique)
        norms = np.linalg.norm(vectors, axis=1)
        vectors = vectors / np.maximum(norms, 1e-12)[:, None]
        doc = np.repeat(np.arange(len(texts)), np.asarray(pc.list_value_length(tokens).fill_null(0)))
        counts = sparse.csr_matrix((np.ones(len(doc), np.float32), (doc, encoded.indices.to_numpy())),
                                   (len(texts), len(unique)))
        summed = counts @ vectors
        lengths = np.linalg.norm(summed, axis=1, keepdims=True)
        return (summed / np.maximum(lengths, 1e-12)).astype(np.float32)

    def word_vectors(self, words: pa.Array) -> np.ndarray:
        """(words, dims): fastText's `get_word_vector` of each."""
        ids = np.asarray(pc.index_in(words, value_set=self.words).fill_null(-1))
        known = np.flatnonzero(ids >= 0)
        owner, gram = self.subwords(words)
        rows, columns = np.concatenate([owner, known]), np.concatenate([self.nwords + gram, ids[known]])
        touched, columns = np.unique(columns, return_inverse=True)
        weights = (1.0 / np.bincount(rows, minlength=len(words))[rows]).astype(np.float32)
        mean = sparse.csr_matrix((weights, (rows, columns)), (len(words), len(touched)))
        return mean @ self.input[touched]  # in float32, as fastText

    def subwords(self, words: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(word, bucket) of every character n-gram, `minn` to `maxn` characters, of each `<word>` (none of the
        end-of-line word `</s>`), as fastText's computeSubwords, over the UTF-8 bytes of all words at once."""
        empty = (np.zeros(0, np.int64),) * 2
        if not self.bucket or not len(words):
            return empty
        marked = pc.binary_join_element_wise("<", words.cast(pa.string()), ">", "").cast(pa.binary())
        offsets = np.frombuffer(marked.buffers()[1], np.int32, len(marked) + 1, marked.offset * 4).astype(np.int64)
        data = np.frombuffer(marked.buffers()[2], np.uint8)[:offsets[-1]]
        starts = np.flatnonzero((data & 0xC0) != 0x80)  # where each character begins
        starts = starts[starts >= offsets[0]]
        word = np.searchsorted(offsets, starts, side="right") - 1
        chars = np.bincount(word, minlength=len(marked))
        position = np.arange(len(starts)) - np.r_[0, np.cumsum(chars)[:-1]][word]
        bounds = np.insert(starts, np.cumsum(chars), offsets[1:])  # a word's characters, then its end
        eos = np.asarray(pc.equal(words, "</s>").fill_null(False))[word]
        owners, grams = [], []
        for n in range(max(1, self.minn), self.maxn + 1):
            fits = (position + n <= chars[word]) & ~eos
            if n == 1:  # "<" and ">" alone are not n-grams
                fits &= (position != 0) & (position + 1 != chars[word])
            c = np.flatnonzero(fits)
            owners.append(word[c])
            grams.append(fnv1a(data, bounds[c + word[c]], bounds[c + word[c] + n]) % self.bucket)
        return (np.concatenate(owners), np.concatenate(grams)) if owners else empty


def fnv1a(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """fastText's 32-bit FNV-1a of each byte range of `data`, each byte sign-extended first, as its C++ does."""
    h = np.full(len(starts), 2166136261, np.uint32)
    lengths = ends - starts
    for k in range(int(lengths.max(initial=0))):
        at = np.flatnonzero(lengths > k)
        byte = data[starts[at] + k].view(np.int8).astype(np.int32).astype(np.uint32)
        h[at] = (h[at] ^ byte) * np.uint32(16777619)
    return h.astype(np.int64)


def _dictionary(f, path: str) -> tuple[list[str], int, int]:
    """(entries' words, words before labels, the offset after the dictionary) of the open file, read through
    a memory map, so that the matrices after it are not read."""
    start = f.tell()
    size, nwords, _, _, pruned = struct.unpack("<3iqq", f.read(28))
    if pruned != -1:
        raise FastTextModelError(f"{path}: a pruned model (its n-gram rows were renumbered); give an unpruned .bin")
    words, at = [], start + 28
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for _ in range(size):
            end = data.find(b"\0", at)
            if end < 0:
                raise FastTextModelError(f"{path}: its dictionary is cut short")
            words.append(data[at:end].decode("utf-8", "replace"))
            at = end + 1 + 8 + 1  # the word, its count (int64) and its type (int8)
    return words, nwords, at


def model_name(path: str) -> str:
    """`fasttext:<sha256>`: versions embedded by one model file are comparable, whatever its path."""
    digest = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return f"fasttext:{digest.hexdigest()}"
