import argparse

import pytest

from flows.cli import main, scheduler_named
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
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    assert main(["check", str(write(tmp_path, "sources: [{uri: a.jsonl}]\noutput: o\n"))]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'c.yaml'}: valid (1 sources, output {tmp_path / 'o'} writable, suites found)\n"
    assert main(["check", str(write(tmp_path, "sources: []\noutput: o\n"))]) == 2
    assert "sources: List should have at least 1 item" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.yaml")]) == 2


def test_check_names_inverted_ranges_booleans_for_numbers_and_repeated_keys(tmp_path):
    path = write(tmp_path, "sources: [{uri: a.jsonl}]\noutput: o\npreprocess:\n  length: {min_chars: 500, max_chars: 100}\n"
                           "  gopher_quality: {min_doc_words: true, max_doc_words: 10.5}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        f"invalid config {path}:",
        "  preprocess.length: min_chars (500) is above max_chars (100)",
        "  preprocess.gopher_quality.min_doc_words: expected a number, got true",
        "  preprocess.gopher_quality.max_doc_words: Input should be a valid integer, got a number with a fractional part"]
    path = write(tmp_path, "sources: [{uri: a.jsonl}]\noutput: o\ndedup: {threshold: 0.8}\noutput: p\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'output' \(first on line 2; YAML would keep only the last\)"
                                          rf"\n  in \"{path}\", line 4, column 1"):
        load_config(path)


def test_check_lists_every_reason_a_run_could_not_start(tmp_path, s3, capsys, monkeypatch):
    fs, options = s3
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    monkeypatch.delenv("CURATE_NO_SUCH_VAR", raising=False)
    endpoint = options["client_kwargs"]["endpoint_url"]
    path = write(tmp_path, f"sources: [{{uri: a.jsonl}}, {{uri: 'nothing/*.jsonl'}}, {{uri: 's3://curate/raw/*.jsonl', "
                           f"storage_options: {{client_kwargs: {{endpoint_url: '{endpoint}'}}, key: {{env: CURATE_NO_SUCH_VAR}}}}}}]\n"
                           f"output: s3://no-such-bucket/out\nstorage_options: {{client_kwargs: {{endpoint_url: '{endpoint}'}}}}\n"
                           f"gates: {{suites_dir: suites, raw: 'off', clean: 'off', dedup: 'off'}}\n")
    assert main(["check", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"curate: {path} is valid, but a run could not start:",
        f"  source 1 ({tmp_path}/nothing/*.jsonl): matched no files",
        "  sources[2].storage_options.key names the environment variable CURATE_NO_SUCH_VAR, which is not set where "
        "the flow runs",
        "  output s3://no-such-bucket/out: bucket 'no-such-bucket' does not exist (curate does not create buckets: "
        "create it, or fix the name)",
        f"  gates.export: no expectation suite for gate 'export': {tmp_path}/suites/export.json does not exist"]
    assert not fs.exists("no-such-bucket")  # looked at, never created


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


def test_a_named_scheduler_is_seen_before_the_config_is_loaded(tmp_path, monkeypatch):
    """`curate run` starts its local workers' imports before loading the config, unless a scheduler is named."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    local = write(tmp_path, "sources: [{uri: x.jsonl}]\noutput: o\ndask: {n_workers: 2}\n")
    remote = tmp_path / "r.yaml"
    remote.write_text("sources: [{uri: x.jsonl}]\noutput: o\ndask: {address: 'tcp://h:8786'}\n")
    args = argparse.Namespace(config=str(local), dask_address=None)
    assert scheduler_named(args) is False
    assert scheduler_named(argparse.Namespace(config=str(remote), dask_address=None)) is True
    assert scheduler_named(argparse.Namespace(config=str(local), dask_address="tcp://h:8786")) is True
    assert scheduler_named(argparse.Namespace(config=str(tmp_path / "missing.yaml"), dask_address=None)) is True
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://h:8786")
    assert scheduler_named(args) is True


def test_settings_of_a_feature_left_off_are_an_error_unless_it_is_off_on_purpose(tmp_path, capsys):
    """Before, a classifier's `train` without `enabled: true` trained nothing, and `curate check` said nothing."""
    base = "sources: [{uri: x.jsonl}]\noutput: o\n"
    path = write(tmp_path, base + "preprocess:\n  quality_classifier:\n    train: {positive: a.jsonl, negative: b.jsonl}\n"
                                  "    keep_top: 0.5\ndedup: {semantic: {threshold: 0.99}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines()[1] == (
        "  (top level): preprocess.quality_classifier: keep_top, train given, but the feature is off (enabled is "
        "false by default): add enabled: true, or enabled: false to keep them unused; dedup.semantic: threshold "
        "given, but the feature is off (enabled is false by default): add enabled: true, or enabled: false to keep "
        "them unused")
    assert main(["check", str(path)]) == 2 and "quality_classifier: keep_top, train given" in capsys.readouterr().err
    waiting = load_config(write(tmp_path, base + "dedup: {semantic: {enabled: false, threshold: 0.99}}\n"))
    assert not waiting.dedup.semantic.enabled
    from flows.config import PipelineConfig
    assert PipelineConfig.model_validate(waiting.model_dump(mode="json")) == waiting  # as a deployment stores it


def test_text_rule_settings_are_bounded(tmp_path):
    path = write(tmp_path, "sources: [{uri: x.jsonl}]\noutput: o\npreprocess:\n"
                           "  gopher_quality: {max_non_alpha_words_ratio: 5, min_doc_words: -1}\n"
                           "  gopher_repetition: {dup_line_frac: 1.5}\n  c4: {max_word_length: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines()[1:] == [
        "  preprocess.gopher_quality.min_doc_words: Input should be greater than or equal to 0",
        "  preprocess.gopher_quality.max_non_alpha_words_ratio: Input should be less than or equal to 1",
        "  preprocess.gopher_repetition.dup_line_frac: Input should be less than or equal to 1",
        "  preprocess.c4.max_word_length: Input should be greater than or equal to 1"]


def every_setting():
    """(dotted model.field, field info) of every setting of every modality's config, once each."""
    import typing

    from pydantic import BaseModel

    from flows.config import PipelineConfig
    from tasks import modalities

    seen, found = set(), []

    def models(annotation):
        return [a for a in typing.get_args(annotation) or (annotation,) if isinstance(a, type) and issubclass(a, BaseModel)] \
            + [m for a in typing.get_args(annotation) if typing.get_args(a) for m in models(a)]

    def walk(model):
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            found.append((f"{model.__name__}.{name}", info))
            for inner in models(info.annotation):
                walk(inner)
    walk(PipelineConfig)
    for modality in modalities.MODALITIES.values():
        for section in ("source", "collect", "preprocess", "dedup", "export"):
            walk(getattr(modality, section))
    return found


def test_every_setting_is_described_and_every_number_bounded():
    """The UI's run form shows each description; a number without bounds takes any typo."""
    import typing

    import annotated_types

    settings = every_setting()
    assert len(settings) > 250
    assert [name for name, info in settings if not info.description] == []
    numbers = [(name, info) for name, info in settings
               if any(t in (int, float) for t in typing.get_args(info.annotation) or (info.annotation,))]
    bounded = (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt)
    assert [name for name, info in numbers if not any(isinstance(m, bounded) for m in info.metadata)] == []
