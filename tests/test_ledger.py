from tasks.collect import InputFile
from tasks.io.storage import Store
from tasks.runs import ledger


def entry(uri, size, stamp, sha):
    return {"uri": uri, "bytes": size, "stamp": stamp, "sha256": sha, "records": 1, "quarantined": 0}


def test_only_published_versions_ledgers_count(tmp_path):
    store = Store(str(tmp_path))
    ledger.record(store, "v1", [entry("a", 1, "t1", "h1")])
    ledger.record(store, "v2", [entry("b", 2, "t2", "h2")])  # its run failed: no manifest
    store.write_json({}, "versions", "v1", "manifest.json")
    assert ledger.read(store).select(["uri", "version"]).to_pylist() == [{"uri": "a", "version": "v1"}]
    assert ledger.read(Store(str(tmp_path / "empty"))).num_rows == 0


def test_unseen_compares_uri_size_and_stamp_and_reads_only_same_size_suspects(tmp_path):
    store = Store(str(tmp_path))
    ledger.record(store, "v1", [entry("same", 10, "t1", "h-same"), entry("touched", 10, "t1", "h-touched"),
                                entry("edited", 10, "t1", "h-old"), entry("grown", 10, "t1", "h-grown")])
    store.write_json({}, "versions", "v1", "manifest.json")
    files = [InputFile("same", 10, "jsonl", None, 0, "t1"), InputFile("touched", 10, "jsonl", None, 0, "t2"),
             InputFile("edited", 10, "jsonl", None, 0, "t2"), InputFile("grown", 11, "jsonl", None, 0, "t2"),
             InputFile("new", 10, "jsonl", None, 0, "t1")]
    read = []
    checksums = {"touched": "h-touched", "edited": "h-new"}

    def checksum(f):
        read.append(f.url)
        return checksums[f.url]
    assert [f.url for f in ledger.unseen(files, ledger.read(store), checksum)] == ["edited", "grown", "new"]
    assert read == ["touched", "edited"]  # a new URI or a new size needs no read
