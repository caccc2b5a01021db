"""The fastText reader against fastText itself: tests/data/fasttext/expected.json holds what the fastText
package (0.9.2) gave for these texts and words with the model beside it (made by make_models.py there)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pytest

from conftest import DATA
from tasks.text.fasttext_vectors import FastTextModelError, FastTextVectors, fnv1a, model_name

MODELS = DATA / "fasttext"
EXPECTED = json.loads((MODELS / "expected.json").read_text(encoding="utf-8"))


def test_sentence_and_word_vectors_are_fasttexts_own():
    model = FastTextVectors(str(MODELS / "skipgram.bin"))
    texts = list(EXPECTED["sentences"])
    theirs = np.array([EXPECTED["sentences"][t] for t in texts])
    theirs /= np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
    assert model.dims == 8 and np.abs(model.embed(pa.array(texts)) - theirs).max() < 1e-6
    assert np.abs(model.embed(pa.array(texts))[texts.index("")]).max() == 0  # no words: the zero vector
    words = list(EXPECTED["words"])
    assert np.abs(model.word_vectors(pa.array(words)) - np.array([EXPECTED["words"][w] for w in words])).max() < 1e-6


def hashes(texts: list[str]) -> list[int]:
    data = [t.encode() for t in texts]
    ends = np.cumsum([len(d) for d in data])
    return fnv1a(np.frombuffer(b"".join(data), np.uint8), ends - [len(d) for d in data], ends).tolist()


def test_fnv1a_sign_extends_bytes_as_fasttexts_cpp():
    # 32-bit FNV-1a of b"a": (2166136261 ^ 0x61) * 16777619 mod 2^32; "é" has bytes >= 0x80, sign-extended
    assert hashes(["a"]) == [((2166136261 ^ 0x61) * 16777619) % 2**32]
    h = 2166136261
    for byte in "é".encode():
        h = ((h ^ (byte | 0xFFFFFF00)) * 16777619) % 2**32
    assert hashes(["é", "a", ""]) == [h, hashes(["a"])[0], 2166136261]


def test_a_task_gets_the_model_by_its_path():
    model = FastTextVectors(str(MODELS / "skipgram.bin"))
    copy = pickle.loads(pickle.dumps(model))
    assert len(pickle.dumps(model)) < 1000 and np.array_equal(copy.embed(pa.array(["river"])),
                                                               model.embed(pa.array(["river"])))


def test_models_it_cannot_read_are_named_with_the_reason(tmp_path):
    with pytest.raises(FastTextModelError, match=r"supervised.bin: a supervised model; sentence vectors need one "
                                                 r"trained without labels \(fasttext skipgram or cbow\)"):
        FastTextVectors(str(MODELS / "supervised.bin"))
    (tmp_path / "notes.bin").write_text("not a model at all, but long enough to have a header of 64 bytes ......")
    with pytest.raises(FastTextModelError, match=r"notes.bin: not a fastText model \(.bin, format version 12\)"):
        FastTextVectors(str(tmp_path / "notes.bin"))
    with pytest.raises(FastTextModelError, match=r"missing.bin: No such file or directory"):
        FastTextVectors(str(tmp_path / "missing.bin"))
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes((MODELS / "skipgram.bin").read_bytes()[:50_000])
    with pytest.raises(FastTextModelError, match=r"cut.bin: input matrix cut short or of the wrong shape \(2847 x 8 in 50,000 bytes; 2847 x 8 expected\)"):
        FastTextVectors(str(truncated))


def test_the_model_name_is_its_sha256(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    assert model_name(str(tmp_path / "a.bin")) == (
        "fasttext:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_check_names_a_model_that_gives_no_sentence_vectors(tmp_path):
    from flows.config import load_config
    from flows.preflight import semantic_model

    path = tmp_path / "c.yaml"
    for model, found in [(MODELS / "skipgram.bin", []),
                         (MODELS / "supervised.bin", [f"dedup.semantic.model: {MODELS / 'supervised.bin'}: a supervised "
                                                      "model; sentence vectors need one trained without labels "
                                                      "(fasttext skipgram or cbow)"])]:
        path.write_text(json.dumps({"sources": [{"uri": "a/*"}], "output": "out",
                                    "dedup": {"semantic": {"enabled": True, "model": str(model)}}}))
        assert semantic_model(load_config(path)) == found


def test_a_run_embeds_with_the_model_and_names_it_in_the_manifest_and_index(tmp_path):
    """The model's vectors (8 dims, trained on 60 documents: coarse) drive the stage end to end: every removal
    is accounted with the document kept and its cosine, and the version names the model by its sha256."""
    import re

    import pyarrow.dataset as ds
    import yaml

    from conftest import E2E, e2e_config
    from flows.config import load_config
    from flows.curate import run_pipeline

    out = tmp_path / "out"
    data = e2e_config(str(E2E / "*.jsonl*"), str(out))
    data["dedup"] = {"semantic": {"enabled": True, "threshold": 0.9999, "model": str(MODELS / "skipgram.bin")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    summary = run_pipeline(load_config(tmp_path / "c.yaml", {"export.version": "v1"}))
    stage = summary["stages"]["semantic"]
    removed = ds.dataset(str(out / "runs" / summary["run_id"] / "semantic" / "_rejected"),
                         format="parquet").to_table().to_pylist()
    assert stage["in"] == stage["kept"] + len(removed) and stage["rejected"] == {"dedup.semantic": len(removed)} != {}
    kept = set(ds.dataset(str(out / "runs" / summary["run_id"] / "semantic"), format="parquet",
                          exclude_invalid_files=True).to_table(columns=["id"])["id"].to_pylist())
    for row in removed:
        cosine = float(re.fullmatch(rf"dedup.semantic: duplicate of {re.escape(row['duplicate_of'])} \(cosine "
                                    r"([0-9.]+)\)", row["reason"]).group(1))
        # SemDeDup's rule: a document duplicates its most similar better one, which may itself be removed
        assert 0.9999 <= cosine <= 1 and row["duplicate_of"] in kept | {r["id"] for r in removed}
    name = model_name(str(MODELS / "skipgram.bin"))
    manifest = json.loads((out / "versions" / "v1" / "manifest.json").read_text())
    assert manifest["dedup"]["semantic"] | {"clusters": None} == {
        "documents": stage["in"], "published": 0, "clusters": None, "removed": len(removed), "embedder": name, "dims": 8}
    index = json.loads((out / "index" / "v1" / "index.json").read_text())
    assert index["semantic"] == {"embedder": name, "dims": 8, "shards": index["shards"]}
    assert not (out / "index" / "v1" / "semantic" / "embedder.npz").exists()


def test_the_card_says_what_embedded_the_documents():
    from tasks.text.stats import semantic_card

    found = {"documents": 1200, "published": 27, "clusters": 35, "removed": 14, "embedder": "fasttext:ab12", "dims": 8}
    assert semantic_card({"dedup": {"semantic": found}}) == (
        "\n## Semantic dedup\n14 of 1,200 documents were removed as rewordings of others (rule `dedup.semantic`), "
        "compared within 35 k-means clusters, and against 27 published documents; the embedding (8 dimensions) "
        "is the fastText model of sha256 `ab12`.\n")
    assert "latent semantic analysis fitted in version `v1`" in semantic_card(
        {"dedup": {"semantic": found | {"embedder": "v1", "published": 0}}})
    assert semantic_card({"dedup": {}}) == ""
