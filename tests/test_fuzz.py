"""Property tests: random bytes and mutations of valid files (flipped, cut, inserted, deleted, repeated
bytes, and hostile shapes: integers of thousands of digits, lines over the cap, decompression bombs, rows
naming files outside their table) go through every reader, collect and preprocess. Nothing may crash, and every record is accounted
for: per file, records + quarantined equals what the file holds (its non-blank lines for plain JSONL, one
for a file read whole) and what collect wrote for it; per shard, preprocess keeps or rejects every row.
Derandomized, so CI tries the same inputs on every run; CURATE_FUZZ_EXAMPLES sets how many per format
(200 by default)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from tasks import modalities
from tasks.collect import collect_unit, discover
from tasks.io.layout import RunPaths
from tasks.io.storage import Store

PATHS = RunPaths("fuzz")
LINES = [json.dumps({"id": f"d{i}", "text": f"Document number {i} says something about rivers and boats."})
         for i in range(6)] + ['{"id": "x", "text": "caf\\u00e9 \\ud83d\\ude00"}']
JSONL = ("\n".join(LINES) + "\n").encode()


def png(size=(24, 16)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png((40, 30)))).save(out, "JPEG", quality=80)
    return out.getvalue()


def sound(fmt: str, subtype: str | None = None) -> bytes:
    t = np.arange(8000) / 8000
    out = io.BytesIO()
    soundfile.write(out, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, format=fmt, subtype=subtype)
    return out.getvalue()


def parquet() -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["one text here", None, "three"]}), out, row_group_size=1)
    return out.getvalue()


SEEDS = {  # extension: (modality, a valid file)
    "jsonl": ("text", JSONL),
    "jsonl.gz": ("text", gzip.compress(JSONL)),
    "jsonl.zst": ("text", zstandard.compress(JSONL[:200]) + zstandard.compress(JSONL[200:])),
    "csv": ("text", b'id,text\na,"one, quoted\nline"\nb,two\nc,caf\xc3\xa9\n'),
    "parquet": ("text", parquet()),
    "txt": ("text", b"A plain text document.\nIts second line.\n"),
    "png": ("image", png()),
    "jpg": ("image", jpeg()),
    "wav": ("audio", sound("WAV", "PCM_16")),
    "flac": ("audio", sound("FLAC")),
    "ogg": ("audio", sound("OGG")),
    # a picture table whose rows name files the source does not own; pic.png is written beside it
    "pics.jsonl": ("image", b'{"image": "pic.png"}\n{"image": "/proc/self/environ"}\n{"image": "../../etc/passwd"}\n'
                            b'{"image": "file:///etc/passwd"}\n{"image": "http://169.254.169.254/latest/"}\n'),
    # a bomb: one record, then zeros that decompress past the fuzz's cap on a file (LIMITS)
    "bomb.jsonl.zst": ("text", zstandard.compress(LINES[0].encode() + b"\n" + bytes(3 * 2**20))),
}
LIMITS = {"shard_rows": 4, "max_line_bytes": 64 * 1024, "max_file_bytes": 2**20}
HOSTILE = [b'{"id": "n", "text": "x", "v": ' + b"9" * 5000 + b"}\n", b'{"id": "l", "text": "' + b"w " * 40_000 + b'"}\n',
           b"\n" + b"z" * 70_000, b'{"image": "../../../proc/self/environ"}\n']


def mutate(seed: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for op, at, chunk in edits:
        at = at % (len(data) + 1)
        if op == "flip" and at < len(data):
            data[at] ^= 1 << (chunk[0] % 8 if chunk else 0)
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = chunk
        elif op == "delete":
            del data[at:at + len(chunk) + 1]
        elif op == "repeat":
            data[at:at] = data[at:at + 64]
        elif op == "hostile":
            data[at:at] = HOSTILE[chunk[0] % len(HOSTILE)]
    return bytes(data)


EDITS = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "delete", "repeat", "hostile"]), st.integers(0, 1 << 16),
                           st.binary(min_size=1, max_size=16)), min_size=1, max_size=4)


def contents(ext: str) -> st.SearchStrategy[bytes]:
    seed = SEEDS[ext][1]
    return st.one_of(st.binary(max_size=600), EDITS.map(lambda edits: mutate(seed, edits)))


def check_every_record_is_accounted_for(tmp_path: Path, ext: str, data: bytes) -> None:
    modality = modalities.get(SEEDS[ext][0])
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / f"f.{ext}").write_bytes(data)
    (folder / "pic.png").write_bytes(png())
    sources = [modality.source(uri=str(folder / f"f.{ext}"), **({"id_field": "id"} if SEEDS[ext][0] == "text" else {}))]
    store = Store(str(folder / "out"))
    settings_ = modality.collect().model_copy(update=LIMITS)
    result = collect_unit(discover(sources, modality), sources, settings_, modality, store, PATHS, 0)
    (stats,) = result.files
    written = sum(s["rows"] for s in result.shards)
    quarantine = folder / "out" / "runs" / "fuzz" / "collect" / "_quarantine" / "part-00000.parquet"
    bad = pq.read_table(quarantine).to_pylist() if quarantine.exists() else []
    assert (stats["records"], stats["quarantined"]) == (written, len(bad))
    assert all(b["error"] and b["line"] >= 1 and b["source"].endswith(f"f.{ext}") for b in bad)
    assert not [b for b in bad if "PATH=" in b["error"] or "root:" in b["error"]]  # no byte of a file read
    if ext in ("jsonl", "pics.jsonl"):
        assert stats["records"] + stats["quarantined"] == sum(1 for line in data.split(b"\n") if line.strip())
    if ext in ("txt", "png", "jpg", "wav", "flac", "ogg"):
        assert stats["records"] + stats["quarantined"] == 1
    for shard in result.shards:
        table = store.read_table(*PATHS.stage("collect", shard["name"]))
        kept, rejected = modality.preprocess_shard(table, modality.preprocess())
        assert kept.num_rows + rejected.num_rows == table.num_rows == shard["rows"]
        assert all(rejected["rule"].to_pylist()) and all(rejected["reason"].to_pylist())


def fuzz(ext: str, examples: int):
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=contents(ext))
    def test(tmp_path, data):
        check_every_record_is_accounted_for(tmp_path, ext, data)
    test.__name__ = f"test_fuzzed_{ext.replace('.', '_')}_files_lose_nothing_and_crash_nothing"
    return test


EXAMPLES = int(os.environ.get("CURATE_FUZZ_EXAMPLES", "200"))  # per format; a long hunt: CURATE_FUZZ_EXAMPLES=5000
for _ext in SEEDS:
    globals()[f"test_fuzzed_{_ext.replace('.', '_')}"] = fuzz(_ext, EXAMPLES)


def test_the_seeds_themselves_are_read_whole():
    """The mutations start from files the readers take as expected: valid ones whole, the hostile seeds with
    their hostile rows quarantined."""
    expected = {"jsonl": 7, "jsonl.gz": 7, "jsonl.zst": 7, "csv": 3, "parquet": 2, "txt": 1, "pics.jsonl": 1,
                "bomb.jsonl.zst": 1}
    quarantined = {"parquet": 1, "pics.jsonl": 4, "bomb.jsonl.zst": 1}
    for ext, (name, data) in SEEDS.items():
        with tempfile.TemporaryDirectory() as tmp:
            modality = modalities.get(name)
            (Path(tmp) / f"f.{ext}").write_bytes(data)
            (Path(tmp) / "pic.png").write_bytes(png())
            sources = [modality.source(uri=str(Path(tmp) / f"f.{ext}"))]
            result = collect_unit(discover(sources, modality), sources, modality.collect().model_copy(update=LIMITS),
                                  modality, Store(str(Path(tmp) / "out")), PATHS, 0)
            assert (result.files[0]["records"], result.files[0]["quarantined"]) == (expected.get(ext, 1),
                                                                                   quarantined.get(ext, 0)), ext


def test_a_parquet_string_with_invalid_utf8_costs_its_row_only(tmp_path):
    """Found by the fuzzer: Parquet does not check UTF-8, and one flipped bit ended the whole file in a crash."""
    data = mutate(SEEDS["parquet"][1], [("flip", 24, b"\x07")])
    (tmp_path / "f.parquet").write_bytes(data)
    sources = [modalities.get("text").source(uri=str(tmp_path / "f.parquet"))]
    text = modalities.get("text")
    result = collect_unit(discover(sources, text), sources, text.collect(), text, Store(str(tmp_path / "out")), PATHS, 0)
    bad = pq.read_table(tmp_path / "out/runs/fuzz/collect/_quarantine/part-00000.parquet").to_pylist()
    assert [(b["line"], b["error"]) for b in bad] == [
        (1, "invalid UTF-8 in a string value (byte 0): the row cannot become a record"),
        (2, "text field 'text' is null, expected a string")]
    assert (result.files[0]["records"], result.files[0]["quarantined"]) == (1, 2)
