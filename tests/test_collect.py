import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tasks.collect import (CollectSettings, InputFile, SourceError, collect_unit, discover, infer_format, make_id,
                           plan_units)
from tasks.io.layout import RunPaths
from tasks.io.storage import Store
from tasks.text import TEXT, TextSource as Source

PATHS = RunPaths("r")


def collected(files, sources, settings, out) -> dict:
    """collect_unit's result as one dict: counts, shards and files."""
    result = collect_unit(files, sources, settings, TEXT, Store(str(out)), PATHS, 0)
    return {**result.counts.as_dict(), "shards": result.shards, "files": result.files}


def run_collect(tmp_path, pattern, settings=CollectSettings(), **source):
    sources = [Source(uri=str(tmp_path / pattern), **source)]
    files = discover(sources, TEXT)
    counts = collected(files, sources, settings, tmp_path / "out")
    records = [pq.read_table(tmp_path / "out" / "runs" / "r" / "collect" / s["name"]) for s in counts["shards"]]
    quarantine = tmp_path / "out" / "runs" / "r" / "collect" / "_quarantine" / "part-00000.parquet"
    bad = pq.read_table(quarantine).to_pylist() if quarantine.exists() else []
    return counts, pa.concat_tables(records) if records else None, bad


def test_infer_format_from_extension():
    assert infer_format("s3://b/x.jsonl.gz") == ("jsonl", "gzip")
    assert infer_format("x.json.zst") == ("jsonl", "zstd")
    assert infer_format("x.parquet") == ("parquet", None)
    assert infer_format("x.CSV") == ("csv", None)
    assert infer_format("notes.txt") == ("txt", None)
    assert infer_format("data.bin", "jsonl") == ("jsonl", None)
    with pytest.raises(SourceError, match="cannot infer the format from '.bin'"):
        infer_format("data.bin")


def test_discover_names_a_source_that_matches_nothing(tmp_path):
    with pytest.raises(SourceError, match=r"source 0 \(.*/nothing-\*\.jsonl\): matched no files"):
        discover([Source(uri=str(tmp_path / "nothing-*.jsonl"))], TEXT)


def test_plan_units_groups_small_files_and_keeps_big_ones_alone(tmp_path):
    files = [InputFile(f"f{i}", size, "jsonl", None, 0) for i, size in enumerate([10, 10, 100, 5, 5])]
    assert [[f.url for f in u] for u in plan_units(files, 50)] == [["f0", "f1"], ["f2"], ["f3", "f4"]]
    # two workers: a unit holds at most half the bytes (24 of 48 MiB), so both collect; small corpora stay whole
    same = [InputFile(f"g{i}", 12 * 2**20, "jsonl", None, 0) for i in range(4)]
    assert [[f.url for f in u] for u in plan_units(same, 2**30, workers=2)] == [["g0", "g1"], ["g2", "g3"]]
    # files a little apart in size still split evenly: never two units of one file and one of two
    uneven = [InputFile(f"h{i}", size * 2**20 // 10, "jsonl", None, 0) for i, size in enumerate([121, 120, 119, 120])]
    assert [[f.url for f in u] for u in plan_units(uneven, 2**30, workers=2)] == [["h0", "h1"], ["h2", "h3"]]
    assert len(plan_units(same, 2**30)) == 1
    assert len(plan_units(files, 2**30, workers=2)) == 1


def test_jsonl_fields_ids_and_meta(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"id": 7, "body": "hello", "lang": "en"}\n\n{"id": "x", "body": "world", "tags": [1, 2]}\n')
    counts, table, bad = run_collect(tmp_path, "a.jsonl", text_field="body", id_field="id")
    assert (counts["in"], counts["kept"], counts["quarantined"]) == (2, 2, 0)
    assert table["id"].to_pylist() == ["7", "x"]
    assert table["text"].to_pylist() == ["hello", "world"]
    assert table["source_index"].to_pylist() == [0, 2]  # 0-based line: the blank line is not a record
    assert [json.loads(m) for m in table["meta"].to_pylist()] == [{"lang": "en"}, {"tags": [1, 2]}]


def test_ids_without_id_field_hash_the_place_under_the_source_not_the_mount(tmp_path):
    """The same collection at two mount points gets the same ids (and so the same splits); the id is
    sha1("<source index>:<path under the source folder>#<record position>")[:20]."""
    ids = []
    for mount in ("disk-a", "elsewhere/disk-b"):
        (tmp_path / mount / "2024").mkdir(parents=True)
        (tmp_path / mount / "2024" / "a.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
        _, table, _ = run_collect(tmp_path, f"{mount}/*/*.jsonl")
        ids.append(table["id"].to_pylist())
    assert ids[0] == ids[1] == ["dfe0e098ca2fd0714f49", "33127a860483072ababe"]
    assert make_id(InputFile("s3://b/x/2024/a.jsonl", 1, "jsonl", None, 0, key="2024/a.jsonl"), 1) == ids[0][1]


def test_malformed_jsonl_is_quarantined_with_line_and_error(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(
        b'{"text": "ok"}\n{"text": "unterminated\n{"body": 1}\n{"text": "\xff"}\n[1]\n{"text": null}\n{"text": 5}\n')
    counts, table, bad = run_collect(tmp_path, "bad.jsonl")
    assert (counts["in"], counts["kept"], counts["quarantined"]) == (7, 1, 6)
    assert table["text"].to_pylist() == ["ok"]
    assert [(b["line"], b["error"]) for b in bad] == [
        (2, "invalid JSON: Unterminated string starting at (column 10) (the line ends inside the record)"),
        (3, "missing text field 'text' (fields: body)"),
        (4, "invalid UTF-8 at byte 10 of the line"),
        (5, "expected a JSON object, got list"),
        (6, "text field 'text' is null, expected a string"),
        (7, "text field 'text' is int, expected a string"),
    ]
    assert all(b["source"].endswith("bad.jsonl") for b in bad)


def test_truncated_gzip_keeps_what_was_read_and_quarantines_the_rest(tmp_path):
    data = gzip.compress(b"".join(b'{"text": "doc %d %s"}\n' % (i, b"x" * 2000) for i in range(50)))
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    counts, table, bad = run_collect(tmp_path, "t.jsonl.gz")
    assert counts["quarantined"] == 1 and counts["kept"] == table.num_rows > 0
    assert bad[0]["line"] == table.num_rows + 1
    assert bad[0]["error"].startswith(f"truncated or corrupt compressed stream after line {table.num_rows}")


def test_zstd_jsonl(tmp_path):
    (tmp_path / "z.jsonl.zst").write_bytes(zstandard.compress(b'{"text": "a"}\n{"text": "b"}\n'))
    counts, table, _ = run_collect(tmp_path, "z.jsonl.zst")
    assert table["text"].to_pylist() == ["a", "b"]


def zstd_frames(lines: list[bytes], per_frame: int) -> list[bytes]:
    """A zstd file as separate frames of `per_frame` lines each, as parallel compressors write them."""
    return [zstandard.compress(b"".join(lines[i:i + per_frame])) for i in range(0, len(lines), per_frame)]


def test_zstd_reads_every_frame_and_quarantines_a_cut_inside_one(tmp_path):
    lines = [b'{"text": "doc %d"}\n' % i for i in range(100)]
    frames = zstd_frames(lines, 50)
    (tmp_path / "whole.jsonl.zst").write_bytes(b"".join(frames))
    (tmp_path / "cut.jsonl.zst").write_bytes(frames[0] + frames[1][: len(frames[1]) // 2])
    counts, table, _ = run_collect(tmp_path, "whole.jsonl.zst")
    assert (counts["in"], counts["kept"], counts["quarantined"]) == (100, 100, 0)
    counts, table, bad = run_collect(tmp_path, "cut.jsonl.zst")
    # before: 50 kept, nothing quarantined, the second frame's 50 records gone without a word
    assert (counts["kept"], counts["quarantined"]) == (50, 1)
    assert [(b["line"], b["error"]) for b in bad] == [
        (51, "truncated or corrupt compressed stream after line 50: the file ends inside zstd frame 2: it was cut short")]


def test_a_cut_at_a_frame_boundary_inside_a_line_is_named_as_such(tmp_path):
    data = b"".join(b'{"text": "doc %d"}\n' % i for i in range(10))
    cut = data.index(b"doc 7") + 2  # the first frame ends inside line 8, the second frame is lost
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.compress(data[:cut]))
    counts, table, bad = run_collect(tmp_path, "c.jsonl.zst")
    assert (counts["kept"], counts["quarantined"]) == (7, 1)
    assert [(b["line"], b["error"]) for b in bad] == [
        (8, "invalid JSON: Unterminated string starting at (column 10) (the line ends inside the record)")]


def test_big_file_becomes_several_shards(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(25)))
    counts, table, _ = run_collect(tmp_path, "a.jsonl", CollectSettings(shard_rows=10))
    assert [s["rows"] for s in counts["shards"]] == [10, 10, 5]
    assert [s["name"] for s in counts["shards"]] == ["part-00000-0000.parquet", "part-00000-0001.parquet",
                                                     "part-00000-0002.parquet"]
    assert table["text"].to_pylist() == [f"doc {i}" for i in range(25)]


def test_parquet_csv_and_txt(tmp_path):
    pq.write_table(pa.table({"content": ["p1", None, "p3"], "n": [1, 2, 3]}), tmp_path / "a.parquet")
    counts, table, bad = run_collect(tmp_path, "a.parquet", text_field="content")
    assert table["text"].to_pylist() == ["p1", "p3"]
    assert [json.loads(m) for m in table["meta"].to_pylist()] == [{"n": 1}, {"n": 3}]
    assert [(b["line"], b["error"]) for b in bad] == [(2, "text field 'content' is null, expected a string")]

    (tmp_path / "b.csv").write_text('id,text\n1,"first, with comma"\n2,second\n3,x,extra\n')
    counts, table, bad = run_collect(tmp_path, "b.csv", id_field="id")
    assert table["text"].to_pylist() == ["first, with comma", "second"]
    assert table["id"].to_pylist() == ["1", "2"]
    assert [b["error"] for b in bad] == ["expected 2 columns, got 3"]

    (tmp_path / "c.txt").write_text("line one\nline two\n")
    (tmp_path / "d.txt").write_bytes(b"fine\nbad \xff here\n")
    counts, table, bad = run_collect(tmp_path, "*.txt")
    assert table["text"].to_pylist() == ["line one\nline two\n"]
    assert [(b["source"].split("/")[-1], b["line"], b["error"]) for b in bad] == [
        ("d.txt", 2, "invalid UTF-8 at byte 9 of the file")]


def test_every_file_gets_its_checksum_and_listing_stamp(tmp_path):
    """The ledger's checksum is of the stored bytes, whatever the format and however far reading got."""
    import hashlib
    import os

    whole = gzip.compress(b"".join(b'{"text": "doc %d %s"}\n' % (i, b"x" * 2000) for i in range(50)))
    (tmp_path / "a.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # truncated: reading stops early
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.compress(b'{"text": "a"}\n'))
    (tmp_path / "c.csv").write_text("text\nx\n")
    pq.write_table(pa.table({"text": ["p"]}), tmp_path / "d.parquet")
    (tmp_path / "e.txt").write_text("plain")
    os.utime(tmp_path / "e.txt", (1_700_000_000, 1_700_000_000))
    counts, _, _ = run_collect(tmp_path, "*.*")
    for f in counts["files"]:
        path = tmp_path / f["uri"].split("/")[-1]
        assert f["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), path.name
        assert f["stamp"] == str(path.stat().st_mtime), path.name
    assert counts["files"][-1]["stamp"] == "1700000000.0"


def test_http_source_on_a_loopback_server(tmp_path):
    import functools
    import http.server
    import threading

    (tmp_path / "web.jsonl.gz").write_bytes(gzip.compress(b'{"text": "over http"}\n{"text": "second"}\n'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/web.jsonl.gz"
        sources = [Source(uri=url)]
        files = discover(sources, TEXT)
        assert [(f.url, f.format, f.compression) for f in files] == [(url, "jsonl", "gzip")]
        counts = collected(files, sources, CollectSettings(), tmp_path / "out")
        table = pq.read_table(tmp_path / "out" / "runs" / "r" / "collect" / counts["shards"][0]["name"])
        assert table["text"].to_pylist() == ["over http", "second"]
        assert table["source"].to_pylist() == [url, url]
    finally:
        server.shutdown()


def test_hostile_lines_are_quarantined_and_the_rest_of_the_file_is_read(tmp_path):
    """Before: a 1,100-deep line raised RecursionError, a lone surrogate an empty UnicodeEncodeError when the
    shard was written, a text file named .parquet ArrowInvalid; each failed the run after three retries."""
    deep = '{"text": ' + "[" * 1100 + "]" * 1100 + "}"
    (tmp_path / "a.jsonl").write_text("\n".join(['{"text": "first"}', deep, '{"text": "half \\ud800 of a pair"}',
                                                 '{"text": "a whole pair \\ud83d\\ude00"}', '{"text": "last"}']) + "\n")
    (tmp_path / "b.parquet").write_text('{"text": "I am JSON"}\n')
    counts, table, bad = run_collect(tmp_path, "[ab].*")
    assert (counts["in"], counts["kept"], counts["quarantined"]) == (6, 3, 3)
    assert table["text"].to_pylist() == ["first", "a whole pair \U0001F600", "last"]
    assert [(b["source"].rsplit("/", 1)[1], b["line"], b["error"]) for b in bad] == [
        ("a.jsonl", 2, "JSON nested too deep to parse (beyond Python's recursion limit)"),
        ("a.jsonl", 3, "a lone UTF-16 surrogate '\\ud800' in a string: not encodable as UTF-8"),
        ("b.parquet", 1, "not a Parquet file: Parquet magic bytes not found in footer. Either the file is corrupted "
                         "or this is not a parquet file.")]


def test_only_errors_that_may_go_away_are_retried():
    from prefect.states import Failed

    from tasks.stages import transient

    assert [transient(None, None, Failed(data=e)) for e in (
        ConnectionResetError(), TimeoutError(), OSError("503 Slow Down"), FileNotFoundError(), PermissionError(),
        ValueError("bad input"), RecursionError())] == [True, True, True, False, False, False, False]


def test_csv_columns_are_text_and_a_bad_row_costs_only_itself(tmp_path):
    """Before: numeric ids over the first 4 MB block made one later id 'x-1' end the file (the rest counted
    nowhere), and one invalid byte quarantined every row of its batch."""
    rows = [f'{i},"document {i} {"w" * 60}"' for i in range(70_000)]  # about 5 MB: more than one block
    rows[69_990] = 'x-1,"an id that is not a number"'
    (tmp_path / "big.csv").write_text("id,text\n" + "\n".join(rows) + "\n")
    counts, table, bad = run_collect(tmp_path, "big.csv", id_field="id", settings=CollectSettings(shard_rows=100_000))
    assert (counts["in"], counts["kept"], counts["quarantined"]) == (70_000, 70_000, 0)
    assert table["id"][69_990].as_py() == "x-1" and table["id"][0].as_py() == "0"

    (tmp_path / "small.csv").write_bytes(b'id,text\n1,"two\nlines"\n2,bad \xff byte\n3,fine\n4,x,extra\n5,last\n')
    counts, table, bad = run_collect(tmp_path, "small.csv", id_field="id")
    assert table["id"].to_pylist() == ["1", "3", "5"] and table["text"][0].as_py() == "two\nlines"
    assert table["source_index"].to_pylist() == [1, 4, 6]  # 0-based physical lines: the first record spans two
    assert [(b["line"], b["error"]) for b in bad] == [(4, "invalid UTF-8 at byte 6 of line 4"),
                                                      (6, "expected 2 columns, got 3")]


def test_shards_are_sized_from_the_corpus_and_the_cluster():
    from tasks.collect import sized
    files = [InputFile(f"f{i}.jsonl", 45 * 10**6 // 3, "jsonl", None, 0) for i in range(3)]
    settings = CollectSettings()
    assert sized(settings, files, 2).shard_bytes == 45 * 10**6 // 8            # 4 shards per worker thread
    assert sized(settings, files, 1).shard_bytes == 45 * 10**6 // 4
    assert sized(settings, files[:1], 8).shard_bytes == 4 * 2**20              # never below the floor
    assert sized(settings, files * 100, 2).shard_bytes == settings.shard_bytes  # nor above the cap
    gz = [InputFile("f.jsonl.gz", 10**7, "jsonl", "gzip", 0)]
    assert sized(settings, gz, 2).shard_bytes == 4 * 10**7 // 8                # compressed: about 4x the bytes
    assert sized(settings, files, 2).shard_rows == settings.shard_rows
