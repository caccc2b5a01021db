"""Hostile input, made here: records are web data, so nothing in a source file may crash a run, exhaust a
worker, read a file the source does not own, or put a byte of such a file into an error or a report."""

from __future__ import annotations

import gzip
import io
import json
import os
from html.parser import HTMLParser

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
import zstandard
from PIL import Image

from tasks.audio import AUDIO, AudioCollectSettings, AudioSource
from tasks.audio.decode import Undecodable, decode
from tasks.collect import CollectSettings, collect_unit, discover
from tasks.image import IMAGE, ImageCollectSettings, ImageSource
from tasks.io.compressed import ZstdReader
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.text import TEXT, TextSource

PATHS = RunPaths("r")
GOOD = {"id": "ok", "text": "a fine document about rivers"}


def collected(tmp_path, modality, sources, settings):
    """(counts, kept rows, quarantined rows) of collecting `sources` into tmp_path/out."""
    out = tmp_path / "out"
    result = collect_unit(discover(sources, modality), sources, settings, modality, Store(str(out)), PATHS, 0)
    kept = [row for s in result.shards for row in pq.read_table(out / "runs/r/collect" / s["name"]).to_pylist()]
    quarantine = out / "runs/r/collect/_quarantine/part-00000.parquet"
    bad = pq.read_table(quarantine).to_pylist() if quarantine.exists() else []
    return result.counts.as_dict(), kept, bad


def test_a_huge_integer_is_one_quarantined_record_not_a_failed_run(tmp_path):
    lines = [json.dumps(GOOD), '{"id": "big", "n": ' + "9" * 5000 + ', "text": "x"}', json.dumps(GOOD | {"id": "ok2"})]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    counts, kept, bad = collected(tmp_path, TEXT, [TextSource(uri=str(tmp_path / "a.jsonl"), id_field="id")],
                                  CollectSettings())
    assert counts == {"in": 3, "kept": 2, "rejected": {}, "quarantined": 1}
    assert [r["id"] for r in kept] == ["ok", "ok2"]
    assert [(b["line"], b["error"].split(":")[0]) for b in bad] == [(2, "invalid JSON value")]
    assert "4300 digits" in bad[0]["error"]


def test_a_line_over_the_cap_is_quarantined_with_the_cap_named_and_the_lines_around_it_kept(tmp_path):
    long_line = json.dumps({"id": "long", "text": "w " * (2 * 2**20)})  # 4 MiB
    data = "\n".join([json.dumps(GOOD), long_line, json.dumps(GOOD | {"id": "ok2"})]).encode()
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    (tmp_path / "b.csv").write_text(f'id,text\nc1,short\nc2,"{"v" * (2 * 2**20)}"\nc3,also short\n')
    settings = CollectSettings(max_line_bytes=2**20)
    counts, kept, bad = collected(tmp_path, TEXT, [TextSource(uri=str(tmp_path / "a.jsonl.zst"), id_field="id"),
                                                   TextSource(uri=str(tmp_path / "b.csv"), id_field="id")], settings)
    assert counts == {"in": 6, "kept": 4, "rejected": {}, "quarantined": 2}
    assert [r["id"] for r in kept] == ["ok", "ok2", "c1", "c3"]
    assert [(b["line"], b["error"]) for b in bad] == [
        (2, f"line of {len(long_line)} bytes, over the cap collect.max_line_bytes (1048576): not read"),
        (3, f"line of {2 * 2**20 + 5} bytes, over the cap collect.max_line_bytes (1048576): not read")]
    assert bad[0]["raw"] == long_line[:200]


def test_a_zstd_bomb_yields_bounded_reads_and_stops_at_the_file_cap(tmp_path):
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 * 2**20))
    assert len(bomb) < 16 * 1024
    reader = ZstdReader(io.BytesIO(bomb))
    assert len(reader.read1(100)) == 100
    assert len(reader.pending) <= 64 * 2**20  # what one decompress call may hold (2 KiB in, at most 64 MiB out)
    (tmp_path / "bomb.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        json.dumps(GOOD).encode() + b"\n" + b"\n" * (4 * 2**20)))
    (tmp_path / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * (4 * 2**20)))
    settings = CollectSettings(max_file_bytes=2**20, max_record_bytes=2**19)
    counts, kept, bad = collected(tmp_path, TEXT, [TextSource(uri=str(tmp_path / "bomb.*"), id_field="id")],
                                  settings)
    assert counts == {"in": 3, "kept": 1, "rejected": {}, "quarantined": 2}
    assert sorted((os.path.basename(b["source"]), b["error"]) for b in bad) == [
        ("bomb.jsonl.zst", "the file decompresses to more than 1048576 bytes (the cap collect.max_file_bytes) after "
                           "line 1048524: the rest was not read"),
        ("bomb.txt.gz", "a file read whole holds more than 524288 bytes (the cap collect.max_record_bytes): not read")]


def png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def test_rows_read_only_files_under_their_table_or_an_allowed_prefix(tmp_path):
    """A row naming /proc/self/environ, a parent folder, file:// or a metadata endpoint reads nothing, and the
    error holds no byte of any file: before, /proc/self/environ's first bytes went into the quarantine."""
    os.environ["CURATE_TEST_CANARY"] = "canary-value-never-in-output"
    (tmp_path / "table" / "pics").mkdir(parents=True)
    (tmp_path / "table" / "pics" / "ok.png").write_bytes(png())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "shared.png").write_bytes(png())
    (tmp_path / "secret.png").write_bytes(png())
    refs = ["pics/ok.png", "/proc/self/environ", "../secret.png", "pics/../../secret.png", "pics/%2e%2e/../secret.png",
            "file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", str(tmp_path / "elsewhere/shared.png"),
            "big.png"]
    (tmp_path / "table" / "big.png").write_bytes(png() + bytes(4096))
    (tmp_path / "table" / "rows.jsonl").write_text("".join(json.dumps({"image": r}) + "\n" for r in refs))
    source = ImageSource(uri=str(tmp_path / "table" / "rows.jsonl"),
                         references={"allow": [str(tmp_path / "elsewhere")]})
    counts, kept, bad = collected(tmp_path, IMAGE, [source], ImageCollectSettings(max_record_bytes=4096))
    assert counts == {"in": 9, "kept": 2, "rejected": {}, "quarantined": 7}
    assert [r["image"]["path"] for r in kept] == ["pics/ok.png", str(tmp_path / "elsewhere/shared.png")]
    folder = str(tmp_path / "table")
    outside = f"outside the table's folder {folder} and the allowed prefixes [{str(tmp_path / 'elsewhere')!r}]"
    assert [(b["line"], b["error"]) for b in bad] == [
        (2, f"picture /proc/self/environ not read: {outside}"),
        (3, f"picture ../secret.png not read: {outside}"),
        (4, f"picture pics/../../secret.png not read: {outside}"),
        (5, f"picture pics/%2e%2e/../secret.png not read: {outside}"),
        (6, f"picture file:///etc/passwd not read: {outside}"),
        (7, f"picture http://169.254.169.254/latest/meta-data/ not read: {outside}"),
        (9, "picture big.png not read: it holds more than 4096 bytes (the cap collect.max_record_bytes)")]
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert b"canary-value" not in written and b"CURATE_TEST" not in written


def test_a_reference_on_s3_stays_under_its_table(tmp_path, s3):
    fs, options = s3
    fs.pipe("curate/raw/pics/ok.png", png())
    fs.pipe("curate/private/key.png", png())
    fs.pipe("curate/raw/rows.jsonl", b'{"image": "pics/ok.png"}\n{"image": "../private/key.png"}\n'
                                     b'{"image": "s3://curate/private/key.png"}\n')
    source = ImageSource(uri="s3://curate/raw/rows.jsonl", storage_options=options)
    counts, kept, bad = collected(tmp_path, IMAGE, [source], ImageCollectSettings())
    assert (counts["kept"], counts["quarantined"]) == (1, 2)
    assert [b["error"] for b in bad] == [
        f"picture {ref} not read: outside the table's folder s3://curate/raw (set references.allow on the source to "
        "read files elsewhere)" for ref in ("../private/key.png", "s3://curate/private/key.png")]


def test_errors_name_unknown_bytes_without_quoting_them():
    from tasks.image.decode import Undecodable as NotAPicture, probe

    secret = b"AWS_SECRET_ACCESS_KEY=abc123\n"
    with pytest.raises(NotAPicture) as caught:
        probe(secret, 10**6)
    assert str(caught.value) == "not a picture Pillow can read (29 bytes of text)"
    with pytest.raises(Undecodable) as caught:
        decode(secret)
    assert "abc123" not in str(caught.value) and str(caught.value).endswith("; 29 bytes of text")


def flac(channels: int, rate: int, seconds: float) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.zeros((int(rate * seconds), channels), np.int16), rate, format="FLAC")
    return out.getvalue()


def m4a(seconds: float) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16_000)
        t = np.arange(int(16_000 * seconds)) / 16_000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="flt", layout="mono")
            frame.rate = 16_000
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def test_audio_over_the_sample_budget_is_refused_before_it_is_decoded(tmp_path):
    """8 channels at 192 kHz: the header declares 3,072,000 samples for 2 s, which a budget of 1,000,000 refuses
    before decoding (a few MB of such silence decode to 22 GB); FFmpeg's decodes are counted as they come."""
    bomb = flac(8, 192_000, 2.0)
    with pytest.raises(Undecodable) as caught:
        decode(bomb, max_samples=1_000_000)
    assert str(caught.value) == ("the header declares 8 channels x 192000 Hz x 2.0 s = 3072000 samples, over "
                                 "collect.max_samples (1000000): not decoded")
    assert len(decode(m4a(1.0)).samples) >= 16_000
    with pytest.raises(Undecodable, match=r"over collect.max_samples \(8000\)|more than collect.max_samples \(8000\)"):
        decode(m4a(1.0), max_samples=8000)
    (tmp_path / "bomb.flac").write_bytes(bomb)
    counts, _, bad = collected(tmp_path, AUDIO, [AudioSource(uri=str(tmp_path / "bomb.flac"))],
                               AudioCollectSettings(max_samples=1_000_000))
    assert counts["quarantined"] == 1 and "over collect.max_samples (1000000): not decoded" in bad[0]["error"]


def test_ffmpeg_opens_only_the_containers_curate_means_to_accept():
    """An HLS playlist makes FFmpeg's probe open the files and URLs it lists; it is never opened."""
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    with pytest.raises(Undecodable) as caught:
        decode(playlist)
    assert "FFmpeg: not opened: its first bytes match none of the containers curate reads with FFmpeg" in \
        str(caught.value)


class Elements(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_report_and_card_escape_every_value_a_user_gave():
    from tasks.export import balance_report, report
    from tasks.text import stats

    hostile = '<img src=x onerror="alert(1)">'
    balance = {"stages": ["collect", "export"],
               "caps": {"column": "meta.lang", "limit": 1, "over": {hostile: {"rows": 3, "keeps": 1}}},
               "columns": {"meta.lang": [{"group": hostile, "rows": {"collect": 3, "export": 1},
                                          "shares": {"collect": 1.0, "export": 1.0}, "splits": {"train": 1},
                                          "removed": {"balance.cap": 2}, "wiped_by": None}]}}
    manifest = {"name": hostile, "version": "v1", "run_id": hostile, "created": "2026-12-07", "documents": 1,
                "base_version": None, "sources": [], "gates": [], "splits": {}, "stages": {}}
    examples = report.examples_html({"kept": [{"id": hostile, "text": hostile}],
                                     "dedup.exact": [{"id": hostile, "duplicate_of": hostile, "reason": hostile,
                                                      "text": hostile}]}, stats.example, "documents")
    page = report.render(manifest, [], "documents", examples, balance_report.html(balance, "documents"))
    parser = Elements()
    parser.feed(page)
    assert [tag for tag, _ in parser.tags if tag in ("img", "script")] == []
    assert not [a for _, attrs in parser.tags for a in attrs if a.startswith("on")]
    card = balance_report.markdown(balance, "documents")
    assert "<img" not in card and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in card
