
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow

from flows.config import PipelineConfig
from flows.steps import run_gate
from flows.runtime import prefect_api
from tasks import gates
from tasks.io.layout import RunPaths
from tasks.export import ExportSettings, export_split
from tasks.export.splits import SplitSettings, assign_splits
from tasks.io.storage import Store
from tasks.text import TEXT


def test_splits_are_deterministic_and_follow_the_fractions():
    ids = [f"doc-{i}" for i in range(20000)]
    splits = assign_splits(ids, SplitSettings(train=0.8, validation=0.1, test=0.1))
    assert (splits == assign_splits(ids, SplitSettings(train=0.8, validation=0.1, test=0.1))).all()
    counts = {s: int((splits == s).sum()) for s in ("train", "validation", "test")}
    assert abs(counts["train"] - 16000) < 300 and abs(counts["validation"] - 2000) < 200
    assert sum(counts.values()) == 20000
    assert assign_splits(["doc-7"], SplitSettings(train=1, validation=0, test=0)).tolist() == ["train"]


def test_split_fractions_must_add_up():
    with pytest.raises(ValueError, match="add up to 1, they add up to 1.1"):
        SplitSettings(train=0.9, validation=0.1, test=0.1)


def test_export_split_writes_shards_of_the_target_size(tmp_path):
    store = Store(str(tmp_path))
    for i in range(3):
        store.write_table(pa.table({"id": [f"{i}-{j}" for j in range(10)], "text": ["x"] * 10}), "in", f"p{i}.parquet")
    settings = ExportSettings(shard_rows=7, splits=SplitSettings(train=1, validation=0, test=0))
    result = export_split(store, [("in", f"p{i}.parquet") for i in range(3)], "train", settings, "v1", TEXT)
    assert [s["rows"] for s in result["shards"]] == [7, 7, 7, 7, 2]
    assert result["rows"] == 30
    first = pq.read_table(tmp_path / "versions" / "v1" / "train" / "part-00000.parquet")
    assert first["split"].to_pylist() == ["train"] * 7
    import hashlib
    assert result["shards"][0]["sha256"] == hashlib.sha256((tmp_path / "versions/v1/train/part-00000.parquet").read_bytes()).hexdigest()


def test_a_validated_shard_leaves_nothing_behind_in_the_worker():
    """A long-lived worker validates shard after shard: GX's execution engine must not keep their data."""
    import gc

    suite = {"name": "kept-nothing", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}}]}
    for i in range(3):
        assert gates.validate_shard(pa.table({"text": [f"shard {i}"] * 1000}), suite, f"s{i}")["rows"] == 1000
    gc.collect()
    assert [type(o).__name__ for o in gc.get_objects() if type(o).__name__ == "PandasBatchData"] == []


def test_gate_aggregates_counts_across_shards_and_names_failures(tmp_path):
    suite = {"name": "t", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text", "mostly": 0.7}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}]}
    a = pa.table({"id": ["1", "2", "2"], "text": ["x", None, "y"]})
    b = pa.table({"id": ["3", "4"], "text": [None, "z"]})
    results = [gates.validate_shard(a, suite, "a"), gates.validate_shard(b, suite, "b")]
    # per shard, text nulls are 1/3 and 1/2 (b alone fails mostly=0.7); summed: 2 of 5 = 60% kept < 70%
    agg = gates.aggregate("clean", suite, results, "fail")
    assert [e["unexpected_count"] for e in agg["expectations"]] == [2, 2]
    assert agg["success"] is False
    assert gates.failure_message(agg) == (
        "gate 'clean' failed (suite 't'): expect_column_values_to_not_be_null on column 'text': 2 of 5 rows "
        "unexpected (40%, allowed at most 30%); expect_column_values_to_be_unique on column 'id': 2 of 5 rows "
        "unexpected (40%)")
    ok = gates.aggregate("clean", suite, [gates.validate_shard(a.slice(0, 1), suite, "c")], "fail")
    assert ok["success"] is True


@pytest.mark.parametrize("data_docs, pages", [("failed", ["b"]), ("always", ["a", "b"]), ("never", [])])
def test_data_docs_pages_are_rendered_for_the_shards_the_setting_names(tmp_path, data_docs, pages):
    store, docs = Store(str(tmp_path)), ("gate",)
    suite = {"name": "t", "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}}]}
    check = gates.Check(suite, docs, data_docs)
    results = {name: check(store, pa.table({"text": texts}), name)
               for name, texts in {"a": ["x", "y"], "b": ["z", None]}.items()}
    assert [name for name, r in results.items() if r["data_docs"]] == pages
    for r in results.values():  # one GX validation page per rendered shard, where the gate's index links it
        assert len(r["data_docs"]) == (1 if r["data_docs"] else 0)
        assert all("values must never be null" in (tmp_path / "gate" / page).read_text() for page in r["data_docs"])
    assert (tmp_path / "gate" / "expectations" / "t.html").exists() == bool(pages)


def test_a_gate_takes_what_the_stage_validated_and_validates_only_the_rest(tmp_path):
    """The stage's tasks validate the shards they write (gates.Check); the gate validates a shard itself only
    when no result for its very suite is saved: a shard a resumed run took as it was, or any after the suite
    file was edited."""
    store, paths = Store(str(tmp_path)), RunPaths("r")
    shards = {"a": pa.table({"id": ["1", "2", "3"], "text": ["x", "y", "z"]}),
              "b": pa.table({"id": ["4", "5"], "text": [None, "w"]})}
    for name, table in shards.items():
        store.write_table(table, *paths.stage("preprocess", name))
    suite = {"name": "clean", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}}]}
    config = PipelineConfig.model_validate({"sources": [{"uri": "x"}], "output": str(tmp_path),
                                            "gates": {"clean": "warn"}})
    saved = {name: tmp_path / "runs" / "r" / "reports" / "gates" / "clean" / "shards" / f"{name}.json"
             for name in shards}

    @flow
    def gate(check: gates.Check) -> dict:
        return run_gate("clean", {"clean": check}, store, paths, [paths.stage("preprocess", s) for s in shards],
                        list(shards), config)

    check = gates.Check(suite, paths.gate("clean"))
    check(store, shards["a"], "a")  # as shard a's preprocess task does; b's did not (taken from a killed run)
    written = saved["a"].stat().st_mtime_ns
    with prefect_api():
        result = gate(check)
        assert (result["rows"], result["expectations"][0]["unexpected_count"], result["success"]) == (5, 1, False)
        assert saved["a"].stat().st_mtime_ns == written and saved["b"].exists()  # only b was validated here
        edited = {**suite, "expectations": [{**suite["expectations"][0],
                                            "kwargs": {"column": "text", "mostly": 0.5}}]}
        result = gate(gates.Check(edited, paths.gate("clean")))
    assert (result["rows"], result["expectations"][0]["unexpected_count"], result["success"]) == (5, 1, True)
    assert saved["a"].stat().st_mtime_ns != written  # the edited suite judged every shard again


def test_gate_keeps_the_suite_order_and_names_an_expectation_that_could_not_run():
    """GX lists results in an order of its own (errors first): each must still land on its expectation."""
    suite = {"name": "t", "expectations": [
        {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "text", "min_value": 1}},
        {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "text", "regex": "x"}},
        {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "text", "regex": "q"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "lang"}}]}
    earlier = {"name": "t", "expectations": suite["expectations"][:1]}  # same name, edited since: a worker
    gates.validate_shard(pa.table({"text": ["x"]}), earlier, "z")      # outlives suite files
    shard = gates.validate_shard(pa.table({"text": ["x", "yy"]}), suite, "a")
    assert [(e["expectation"], e["unexpected_count"], e["error"]) for e in shard["expectations"]] == [
        ("expect_column_value_lengths_to_be_between", 0, None),
        ("expect_column_values_to_not_match_regex", 1, None),
        ("expect_column_values_to_not_match_regex", 0, None),
        ("expect_column_values_to_not_be_null", None, 'Error: The column "lang" in BatchData does not exist.')]
    agg = gates.aggregate("clean", suite, [shard], "fail")
    assert gates.failure_message(agg) == (
        "gate 'clean' failed (suite 't'): expect_column_values_to_not_match_regex on column 'text': 1 of 2 rows "
        "unexpected (50%); expect_column_values_to_not_be_null on column 'lang': failed on 1 of 1 shards "
        '(Error: The column "lang" in BatchData does not exist.)')


def test_gx_sees_only_the_columns_the_suite_names_unless_it_judges_the_whole_table():
    suite = {"name": "n", "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_pair_values_to_be_equal", "kwargs": {"column_A": "a", "column_B": "b"}},
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["a", "c"]}}]}
    assert gates.named_columns(suite) == {"id", "a", "b", "c"}
    table = pa.table({"id": ["1", "2"], "a": [1, 2], "b": [1, 3], "c": [0, 0], "text": ["x", "y"]})
    assert gates.metadata(table, gates.named_columns(suite)).column_names == ["id", "a", "b", "c"]
    shard = gates.validate_shard(table, suite, "s")
    assert [e["unexpected_count"] for e in shard["expectations"]] == [0, 1, 0]
    whole = {"name": "w", "expectations": suite["expectations"] + [
        {"type": "expect_table_column_count_to_equal", "kwargs": {"value": 5}}]}
    assert gates.named_columns(whole) is None
    assert gates.validate_shard(table, whole, "s")["expectations"][-1]["success"] is True


def test_project_suites_load_and_name_their_gate():
    for gate in gates.GATES:
        assert gates.load_suite(gate, "text")["name"] == gate
    with pytest.raises(FileNotFoundError, match="no expectation suite for gate 'nope'"):
        gates.load_suite("nope", "text")


def test_suites_follow_the_configured_rules_and_empty_shards():
    """Before: the clean suite failed on any config with language identification off (no `lang` column), on
    a shard every row of which was rejected, and on fastText's lang_score of 1.0000222."""
    import numpy as np

    from flows.config import PipelineConfig
    from tasks.text.preprocess.language import LanguageSettings, filter_language

    off = PipelineConfig.model_validate({"sources": [{"uri": "x"}], "output": "o",
                                         "preprocess": {"language": {"enabled": False}}}).redacted()
    suite = gates.load_suite("clean", "text", config=off)
    assert [e["kwargs"].get("column") for e in suite["expectations"]] == ["text"] * 4
    assert suite["skipped"] == [
        {"expectation": "expect_column_values_to_not_be_null", "column": "lang", "reason": "preprocess.language.enabled is off"},
        {"expectation": "expect_column_values_to_be_between", "column": "lang_score",
         "reason": "preprocess.language.enabled is off"},
        {"expectation": "expect_column_values_to_be_between", "column": "quality_score",
         "reason": "preprocess.quality_classifier.enabled is off"}]
    shard = gates.validate_shard(pa.table({"id": ["1"], "text": ["Some text."]}), suite, "a")
    assert gates.aggregate("clean", suite, [shard], "fail")["skipped"] == suite["skipped"] and shard["success"]

    full = gates.load_suite("clean", "text", config=PipelineConfig.model_validate(
        {"sources": [{"uri": "x"}], "output": "o"}).redacted())
    empty = gates.validate_shard(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), full, "e")
    assert empty["success"] and [e["element_count"] for e in empty["expectations"]] == [0] * 6

    kept, _ = filter_language(pa.table({"text": ["The river had been rising for three days."] * 2}),
                              LanguageSettings(allowed=["en"]))
    assert float(np.max(kept["lang_score"])) <= 1.0


def test_a_gate_that_is_off_reads_off_not_passed():
    assert [gates.status({"policy": p, "success": s}) for p, s in (("off", None), ("fail", True), ("warn", False))] == [
        "off", "passed", "FAILED"]


def test_publishing_a_version_is_exclusive(tmp_path, s3):
    """Before: two runs with one export.version both published, the second over the first."""
    from tasks.export import VersionClaimed, claimed

    for store in (Store(str(tmp_path / "local")), Store("s3://curate/claims", s3[1])):
        with claimed(store, "v1", "run-a"):
            with pytest.raises(VersionClaimed, match=r"version 'v1' is being published by run run-a; choose another"):
                with claimed(store, "v1", "run-b"):
                    pass
            with claimed(store, "v2", "run-c"):  # other versions in parallel stay possible
                assert store.exists("claims", "v1") and store.exists("claims", "v2")
        assert not store.exists("claims", "v1") and not store.exists("claims", "v2")  # given back
        with pytest.raises(RuntimeError, match="gate failed"):
            with claimed(store, "v3", "run-d"):
                raise RuntimeError("gate failed")
        assert not store.exists("claims", "v3")  # given back by a run that failed too


def test_the_largest_group_share_is_judged_on_every_shard_together():
    suite = {"name": "t", "expectations": [
        {"type": "expect_column_largest_group_share_to_be_at_most", "kwargs": {"column": "lang", "max_share": 0.5}}]}
    a = pa.table({"id": ["1", "2", "3", "4"], "lang": ["x", "x", "x", "y"]})       # x is 75% of this shard
    b = pa.table({"id": ["5", "6", "7", "8"], "lang": ["y", "y", "y", None]})
    results = [gates.validate_shard(a, suite, "a"), gates.validate_shard(b, suite, "b")]
    assert results[0]["expectations"][0]["group_counts"] == {"x": 3, "y": 1}
    assert results[0]["expectations"][0]["success"] is False
    passed = gates.aggregate("export", suite, results, "fail")  # together: y 4 of 8 = 50%
    assert (passed["success"], passed["expectations"][0]["largest_group"], passed["expectations"][0]["observed_share"]) == \
        (True, "y", 0.5)
    failed = gates.aggregate("export", suite, results[:1], "fail")
    assert gates.failure_message(failed) == (
        "gate 'export' failed (suite 't'): expect_column_largest_group_share_to_be_at_most on column 'lang': "
        "largest group 'x' is 75.0% of the rows, above 50.0%")
