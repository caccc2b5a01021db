"""The whole flow on a real multi-process Dask cluster and a real (temporary) Prefect server."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml
from prefect.exceptions import FailedRun

from conftest import E2E, FRESH, e2e_config
from flows.config import load_config
from flows.curate import run_pipeline


EXPECTED_STAGES = {
    "collect": {"in": 131, "kept": 125, "rejected": {}, "quarantined": 6},
    "preprocess": {"in": 125, "kept": 32, "quarantined": 0, "rejected": {
        "language.min_score": 29, "language.allowed": 25, "gopher_quality.min_doc_words": 14,
        "c4.min_num_sentences": 11, "gopher_repetition.dup_5_gram": 6, "c4.curly_bracket": 3,
        "gopher_quality.max_non_alpha_words_ratio": 3, "gopher_repetition.dup_6_gram": 1,
        "gopher_repetition.dup_para_frac": 1}},
    "dedup": {"in": 32, "kept": 28, "rejected": {"dedup.exact": 3, "dedup.near": 1}, "quarantined": 0},
    "export": {"in": 28, "kept": 28, "rejected": {}, "quarantined": 0},
}


def make_config(tmp_path: Path, sources: str, output: str, **extra) -> Path:
    data = e2e_config(sources, output, **extra)
    data["export"]["version"] = "v1"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def read(path):
    return ds.dataset(path if isinstance(path, list) else str(path), format="parquet").to_table()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    config = load_config(make_config(tmp, str(E2E / "*.jsonl*"), str(tmp / "out")))
    return run_pipeline(config), tmp / "out"


def test_counts_per_stage_and_rule(local_run):
    summary, _ = local_run
    assert summary["stages"] == EXPECTED_STAGES
    assert summary["splits"] == {"train": 20, "validation": 3, "test": 5}
    assert summary["gates"] == {"raw": True, "clean": True, "dedup": True, "export": True}


def test_every_shard_accounts_for_every_record(local_run):
    summary, out = local_run
    run = out / "runs" / summary["run_id"]
    shards = sorted(p.name for p in (run / "collect").glob("part-*.parquet"))
    assert len(shards) == 4  # 131 lines in 4 files, 40 rows per shard at most
    previous = "collect"
    for stage in ("preprocess", "dedup"):
        for shard in shards:
            n_in = read(run / previous / shard).num_rows
            kept = read(run / stage / shard).num_rows
            rejected = run / stage / "_rejected" / shard
            n_rejected = read(rejected).num_rows if rejected.exists() else 0
            assert n_in == kept + n_rejected, (stage, shard)
        previous = stage
    assert read(run / "collect" / "_quarantine").num_rows == 6


def test_quarantine_names_file_line_and_error(local_run):
    summary, out = local_run
    bad = read(out / "runs" / summary["run_id"] / "collect" / "_quarantine").to_pylist()
    assert sorted((Path(b["source"]).name, b["line"], b["error"]) for b in bad) == [
        ("broken.jsonl", 2, "invalid JSON: Unterminated string starting at (column 28) "
                          "(the line ends inside the record)"),
        ("broken.jsonl", 3, "missing text field 'text' (fields: body, id)"),
        ("broken.jsonl", 4, "invalid UTF-8 at byte 32 of the line"),
        ("broken.jsonl", 5, "expected a JSON object, got list"),
        ("broken.jsonl", 6, "text field 'text' is null, expected a string"),
        ("truncated.jsonl.gz", 2, "truncated or corrupt compressed stream after line 1: "
                                  "Compressed file ended before the end-of-stream marker was reached"),
    ]


def test_planted_duplicates_are_removed_with_the_right_original(local_run):
    summary, out = local_run
    removed = read(out / "runs" / summary["run_id"] / "dedup" / "_rejected").to_pylist()
    got = {r["id"]: (r["rule"], r["duplicate_of"]) for r in removed}
    for planted in json.loads((E2E / "planted.json").read_text()):
        assert got[planted["id"]] == (f"dedup.{planted['kind']}", planted["duplicate_of"])
    # the one natural duplicate of the slice: broken.jsonl's good line repeats d048476 and is read first
    assert got["d048476"] == ("dedup.exact", "broken-ok")
    assert len(got) == 4


def test_published_version_manifest_card_and_reports(local_run):
    summary, out = local_run
    version = out / "versions" / "v1"
    assert (out / "LATEST").read_text() == "v1\n"
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["stages"] == EXPECTED_STAGES
    assert {k: v["rows"] for k, v in manifest["splits"].items()} == {"train": 20, "validation": 3, "test": 5}
    exported = read([str(p) for p in sorted(version.glob("*/part-*.parquet"))])
    assert exported.num_rows == 28 and len(set(exported["id"].to_pylist())) == 28
    assert {"id", "text", "source", "meta", "lang", "split", "content_hash"} <= set(exported.column_names)
    assert set(exported["lang"].to_pylist()) == {"en"}
    assert "<EMAIL>" in " ".join(exported["text"].to_pylist())  # changelogs' maintainer addresses are redacted
    assert len(manifest["sources"]) == 4 and manifest["config_hash"]
    assert [g["gate"] for g in manifest["gates"]] == ["raw", "clean", "dedup", "export"]
    card = (version / "README.md").read_text()
    assert "| train | 20 | 20 | 1 |" in card and "| dedup | dedup.near | 1 |" in card
    report = (version / "report.html").read_text()
    assert report.count("<svg") == 4 and "<title>2 documents: 4</title>" in report  # 4 pairs of duplicates
    assert manifest["lengths"] == {"100-300": 2, "300-1,000": 7, "1,000-3,000": 12, "3,000-10,000": 7}
    gates_dir = out / "runs" / summary["run_id"] / "reports" / "gates"
    for gate in ("raw", "clean", "dedup", "export"):
        result = json.loads((gates_dir / f"{gate}.json").read_text())
        assert result["success"] is True
        # each shard validated by the task that wrote it, its result saved for the gate
        assert len(list((gates_dir / gate / "shards").glob("*.json"))) == result["shards"] > 0
        # Data Docs pages are rendered for shards that fail an expectation (gates.data_docs: failed)
        assert "none rendered" in (gates_dir / gate / "index.html").read_text()
        assert not (gates_dir / gate / "validations").exists()


def test_failing_gate_stops_the_flow_and_publishes_nothing(tmp_path):
    suites = tmp_path / "suites"
    shutil.copytree(Path(__file__).resolve().parent.parent / "expectations" / "text", suites)
    strict = json.loads((suites / "clean.json").read_text())
    strict["expectations"].append({"type": "expect_column_values_to_be_between",
                                   "kwargs": {"column": "lang_score", "min_value": 0.99}})
    (suites / "clean.json").write_text(json.dumps(strict))
    config = load_config(make_config(tmp_path, str(E2E / "*.jsonl*"), str(tmp_path / "out"),
                                     gates={"suites_dir": str(suites)}))
    with pytest.raises(FailedRun, match=r"gate 'clean' failed \(suite 'clean'\): expect_column_values_to_be_between "
                                         r"on column 'lang_score': \d+ of 32 rows unexpected"):
        run_pipeline(config)
    assert not (tmp_path / "out" / "LATEST").exists()
    assert not (tmp_path / "out" / "versions").exists()
    assert not any((tmp_path / "out" / "runs").glob("*/dedup"))  # stopped before the next stage
    # the failing shards' Data Docs pages, linked from the gate's index; the passing gate's none
    gates_dir = next((tmp_path / "out" / "runs").glob("*/reports/gates"))
    pages = sorted(p.relative_to(gates_dir / "clean").as_posix()
                   for p in (gates_dir / "clean" / "validations").rglob("*.html"))
    assert pages and all(f'href="{p}"' in (gates_dir / "clean" / "index.html").read_text() for p in pages)
    assert (gates_dir / "clean" / "expectations" / "clean.html").exists()
    assert not (gates_dir / "raw" / "validations").exists()


def test_a_field_typo_or_an_empty_result_fails_instead_of_publishing(tmp_path):
    """Before: a text_field typo published an empty version and moved LATEST to it."""
    out = tmp_path / "out"
    path = make_config(tmp_path, str(E2E / "*.jsonl*"), str(out))
    data = yaml.safe_load(path.read_text())
    data["sources"][0]["text_field"] = "txt"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FailedRun, match=r"source 0 \(.*/e2e/\*\.jsonl\*\): 4 files, no record could be read; first "
                                         r"problem: .*/e2e/\S+ line 1: missing text field 'txt' \(fields: .*\) "
                                         r"\(set allow_empty: true to publish without them\)"):
        run_pipeline(load_config(path))
    data["sources"][0]["text_field"] = "text"
    data["preprocess"]["length"] = {"min_chars": 1_000_000}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FailedRun, match=r"nothing to publish: every record was removed \(collect: 131 in, 1\d\d kept, "
                                         r"preprocess: 1\d\d in, 0 kept, dedup: 0 in, 0 kept\)"):
        run_pipeline(load_config(path))
    assert not (out / "LATEST").exists() and not (out / "versions").exists() and not any((out / "index").iterdir())


def test_s3_sources_and_output_on_an_existing_dask_scheduler(tmp_path, s3, run_services, monkeypatch):
    fs, options = s3
    for f in E2E.glob("*.jsonl*"):
        fs.put(str(f), f"curate/raw/{f.name}")
    path = make_config(tmp_path, "s3://curate/raw/*.jsonl*", "s3://curate/datasets/e2e",
                       storage_options=options)
    data = yaml.safe_load(path.read_text())
    data["sources"][0]["storage_options"] = options
    path.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")  # the config's own address, not the variable, names the scheduler
    summary = run_pipeline(load_config(path, {"dask.address": run_services[1]}))
    assert summary["stages"] == EXPECTED_STAGES
    assert summary["published"] == "s3://curate/datasets/e2e/versions/v1"
    assert fs.cat("curate/datasets/e2e/LATEST") == b"v1\n"
    manifest = json.loads(fs.cat("curate/datasets/e2e/versions/v1/manifest.json"))
    assert sum(s["rows"] for s in manifest["splits"].values()) == 28
    assert "testing" not in json.dumps(manifest["config"])  # credentials never reach the manifest
    assert len(fs.glob("curate/datasets/e2e/versions/v1/*/part-*.parquet")) == 3


def exported(out: Path, version: str):
    return read([str(p) for p in sorted((out / "versions" / version).glob("*/part-*.parquet"))])


def test_incremental_runs_take_only_new_files_and_dedup_against_what_is_published(local_run, tmp_path):
    summary, first_out = local_run
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    assert json.loads((out / "index" / "v1" / "index.json").read_text())["documents"] == 28
    old = {r["id"]: r["text"] for r in exported(out, "v1").to_pylist()}
    a, b, c = sorted(old)[:3]
    words = old[b].split()
    words[len(words) // 2] = "altered"
    new = [{"id": "copy-a", "text": old[a]}, {"id": "near-b", "text": " ".join(words)},
           {"id": "lower-c", "text": old[c].lower()},
           {"id": "fresh-1", "text": old[a] + "\n\n" + old[b]}, {"id": "fresh-2", "text": old[c] + "\n\n" + old[a]}]
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new))
    path = make_config(tmp_path, str(E2E / "*.jsonl*"), str(out), incremental=True)
    data = yaml.safe_load(path.read_text())
    data["sources"].append({"uri": str(incoming / "*.jsonl"), "id_field": "id"})
    path.write_text(yaml.safe_dump(data))

    second = run_pipeline(load_config(path, {"export.version": "v2"}))
    assert second["stages"]["collect"]["in"] == 5  # only the new file: the ledger has the first run's four
    assert second["stages"]["dedup"] == {"in": 5, "kept": 2, "quarantined": 0,
                                         "rejected": {"dedup.exact": 2, "dedup.near": 1}}
    removed = read(out / "runs" / second["run_id"] / "dedup" / "_rejected").to_pylist()
    assert sorted((r["id"], r["duplicate_of"], r["rule"]) for r in removed) == [
        ("copy-a", a, "dedup.exact"), ("lower-c", c, "dedup.exact"), ("near-b", b, "dedup.near")]
    assert sorted(exported(out, "v2")["id"].to_pylist()) == ["fresh-1", "fresh-2"]
    manifest = json.loads((out / "versions" / "v2" / "manifest.json").read_text())
    assert (manifest["base_version"], manifest["documents"], second["documents"]) == ("v1", 30, 30)
    assert [Path(s["uri"]).name for s in manifest["sources"]] == ["new.jsonl"]
    shards = [s for split in manifest["splits"].values() for s in split["shards"]]
    files = [str(out / "versions" / s["version"] / s["path"]) for s in shards]
    assert {s["version"] for s in shards} == {"v1", "v2"} and read(files).num_rows == 30
    assert sum(s["added"] for s in manifest["splits"].values()) == 2
    ledger = read(out / "ledger" / "v2.parquet").to_pylist()
    assert [(Path(e["uri"]).name, e["records"], e["version"]) for e in ledger] == [("new.jsonl", 5, "v2")]
    assert "2 of them added by this version on top of `v1`" in (out / "versions" / "v2" / "README.md").read_text()

    third = run_pipeline(load_config(path, {"export.version": "v3"}))
    assert third == {"run_id": third["run_id"], "version": None, "published": None, "nothing_new": True,
                     "source_files": 5, "latest_version": "v2"}
    assert not (out / "versions" / "v3").exists() and (out / "LATEST").read_text() == "v2\n"
    assert not (out / "runs" / third["run_id"]).exists()
    os.utime(incoming / "new.jsonl", (1_700_000_000, 1_700_000_000))  # touched, same bytes: still nothing new
    assert run_pipeline(load_config(path, {"export.version": "v3"}))["nothing_new"] is True

    with (incoming / "new.jsonl").open("a") as f:  # a changed file is taken again, whole
        f.write(json.dumps({"id": "fresh-3", "text": FRESH}) + "\n")
    with pytest.raises(FailedRun, match="version 'v2' is already published"):
        run_pipeline(load_config(path, {"export.version": "v2"}))
    fourth = run_pipeline(load_config(path, {"export.version": "v3"}))
    assert fourth["stages"]["dedup"] == {"in": 6, "kept": 1, "quarantined": 0,
                                         "rejected": {"dedup.exact": 4, "dedup.near": 1}}  # the five seen before
    assert exported(out, "v3")["id"].to_pylist() == ["fresh-3"] and fourth["documents"] == 31


def test_results_do_not_depend_on_workers_shards_key_ranges_or_dedup_tasks(local_run, tmp_path):
    summary, out = local_run  # its dedup ran in one task; here each step is tasks of its own
    config = load_config(make_config(tmp_path, str(E2E / "*.jsonl*"), str(tmp_path / "out")),
                         {"collect.shard_rows": 7, "dask.n_workers": 1, "dedup.max_band_rows": 10,
                          "dedup.one_task_up_to": 0})
    other = run_pipeline(config)
    assert other["stages"] == summary["stages"]
    rejected = lambda o, s: sorted((r["id"], r["duplicate_of"]) for r in read(o / "runs" / s["run_id"] / "dedup" / "_rejected").to_pylist())
    assert rejected(tmp_path / "out", other) == rejected(out, summary)
    assert sorted(exported(tmp_path / "out", "v1")["id"].to_pylist()) == sorted(exported(out, "v1")["id"].to_pylist())
