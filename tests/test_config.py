import pytest

from flows.cli import main
from flows.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults_and_paths_relative_to_the_file(tmp_path):
    config = load_config(write(tmp_path, 'sources:\n  - uri: "data/*.jsonl.gz"\n    id_field: id\noutput: ./out\n'))
    assert config.sources[0].uri == str(tmp_path / "data/*.jsonl.gz")
    assert config.output == str(tmp_path / "out")
    assert config.preprocess.gopher_quality.min_doc_words == 50
    assert config.dedup.num_perm == 256 and config.gates.clean == "fail"


def test_unknown_keys_and_bad_values_name_the_key(tmp_path):
    path = write(tmp_path, "sources:\n  - uri: x.jsonl\n    text_feld: body\noutput: o\n"
                           "dedup: {threshold: 2}\ngates: {raw: maybe}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"invalid config {path}:" in message
    assert "sources.0.text_feld: unknown key" in message
    assert "dedup.threshold: Input should be less than 1" in message
    assert "gates.raw: Input should be 'fail', 'warn' or 'off'" in message


def test_overrides_and_secret_masking(tmp_path):
    path = write(tmp_path, "sources: [{uri: s3://b/x.jsonl, storage_options: {key: AKIA, secret: shh}}]\n"
                           "output: s3://b/out\n")
    config = load_config(path, {"output": "s3://b/other", "dask.address": "tcp://127.0.0.1:8786"})
    assert config.output == "s3://b/other" and config.dask.address == "tcp://127.0.0.1:8786"
    assert config.redacted()["sources"][0]["storage_options"] == {"key": "***", "secret": "***"}
    assert "shh" not in str(config.redacted()) and len(config.fingerprint()) == 64


def test_cli_check_exit_codes(tmp_path, capsys):
    assert main(["check", str(write(tmp_path, "sources: [{uri: a.jsonl}]\noutput: o\n"))]) == 0
    assert main(["check", str(write(tmp_path, "sources: []\noutput: o\n"))]) == 2
    assert "sources: List should have at least 1 item" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.yaml")]) == 2


def test_run_summary_table_for_a_published_and_a_nothing_new_run():
    from flows.cli import summary_table

    published = {"run_id": "r1", "stages": {"dedup": {"in": 5, "kept": 3, "quarantined": 0,
                                                      "rejected": {"dedup.exact": 2}}},
                 "gates": {"raw": True}, "splits": {"train": 2, "test": 1}, "published": "out/versions/v2",
                 "documents": 31, "base_version": "v1"}
    assert summary_table(published, 2.0).splitlines() == [
        "run r1 finished in 2.0 s", "",
        "stage               in      kept  rejected  quarantined",
        "dedup                5         3         2            0", "",
        "rejected by rule                                   documents",
        "dedup.exact                                                2", "",
        "gates: raw passed", "splits: train 2, test 1",
        "published: out/versions/v2 (31 documents, 3 added on top of v1)"]
    nothing = {"run_id": "r2", "nothing_new": True, "source_files": 4, "latest_version": "v2"}
    assert summary_table(nothing, 1.25) == ("run r2 finished in 1.2 s: nothing new, all 4 source files were "
                                            "ingested already; the latest version is still v2")
