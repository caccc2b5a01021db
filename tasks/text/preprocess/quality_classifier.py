"""A learned quality score: logistic regression over hashed word unigrams and bigrams, the linear
bag-of-n-grams model class of the GPT-3 and NeMo Curator (fastText) quality classifiers, trained on
documents the user calls good (`positive`) and bad (`negative`), or a fastText supervised `.bin` read from
a local path. Nothing is downloaded.

Every document gets `quality_score` (the probability that it is good); the rule rejects scores below
`min_score`; `keep_top` keeps the best-scored share of what dedup leaves (`tasks.text.quality_top`). Training holds `holdout` of each class out and reports precision, recall and accuracy on it.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr, model_validator
from scipy import optimize, sparse

from tasks.records import Check, Settings, split_by_checks

BUCKETS = 1 << 18      # hashed feature space: unigrams and bigrams share it
WORD = r"[^\p{L}\p{N}]+"  # words are runs of letters and digits, lower-cased
FORMAT = "curate-quality-lr-1"


class QualityTrainSettings(Settings):
    positive: str = Field(description="JSONL or Parquet file(s) (a glob, local or fsspec URL) of good documents")
    negative: str = Field(description="JSONL or Parquet file(s) of bad documents, e.g. a random crawl sample")
    text_field: str = Field("text", description="the field holding each document's text")
    holdout: float = Field(0.1, gt=0, lt=0.5, description="share of each class held out to measure the model")
    l2: float = Field(1e-5, ge=0, description="L2 penalty of the logistic regression")
    seed: int = Field(0, ge=0, description="seed of the held-out draw and the training order")


class QualityClassifierSettings(Settings):
    enabled: bool = Field(False, description="score every document with the quality model (train or path)")
    train: QualityTrainSettings | None = Field(None, description="train the model on the user's own labelled documents")
    path: str | None = Field(None, description="or a local model: curate's quality_classifier.npz of an earlier "
                                               "version, or a fastText supervised .bin or .ftz")
    positive_label: str = Field("__label__hq", description="fastText .bin: the label whose probability is the score")
    min_score: float = Field(0.5, ge=0, le=1, description="reject documents scored below this")
    keep_top: float | None = Field(None, gt=0, le=1, description=(
        "after dedup, keep only this best-scored share of the documents left, across every shard "
        "(rule quality_classifier.keep_top; tasks.text.quality_top)"))
    _model: Any = PrivateAttr(None)  # the loaded model, attached by the run once it is trained or read

    @model_validator(mode="after")
    def _one_model(self) -> QualityClassifierSettings:
        if self.enabled and (self.train is None) == (self.path is None):
            raise ValueError("set exactly one of train (positive and negative documents) or path (a model file)")
        return self

    def attach(self, model: Model | FastTextModel) -> QualityClassifierSettings:
        """A copy holding the loaded model: it travels with the settings to the workers, outside the config."""
        copy = self.model_copy()
        copy._model = model
        return copy


class QualityModelError(ValueError):
    """A model or training set that cannot be used; the message names the file and the problem."""


def features(texts: pa.Array | list[str], buckets: int = BUCKETS) -> sparse.csr_matrix:
    """(documents, buckets) hashed word unigrams and bigrams, log-counted and L2-normalised per document."""
    texts = pa.array(texts, pa.large_string()) if isinstance(texts, list) else texts
    words = pc.split_pattern_regex(pc.utf8_lower(texts.fill_null("")), WORD)
    parent = np.asarray(pc.list_parent_indices(words), dtype=np.int64)
    flat = pc.list_flatten(words)
    present = np.asarray(pc.greater(pc.utf8_length(flat), 0), dtype=bool)
    parent, codes = parent[present], flat.filter(pa.array(present)).dictionary_encode()
    vocabulary = codes.dictionary.to_pylist()
    word_hash = np.array([zlib.crc32(w.encode()) for w in vocabulary], dtype=np.uint64)[np.asarray(codes.indices)]
    same_doc = parent[1:] == parent[:-1]
    bigram = (word_hash[:-1][same_doc] * np.uint64(0x9E3779B1) + word_hash[1:][same_doc] + np.uint64(1)) >> np.uint64(3)
    rows = np.concatenate([parent, parent[:-1][same_doc]])
    cols = (np.concatenate([word_hash, bigram]) % np.uint64(buckets)).astype(np.int64)
    counts = sparse.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), buckets)).tocsr()
    counts.data = np.log1p(counts.data)
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    return sparse.diags(1 / np.maximum(norms, 1e-12)).astype(np.float32) @ counts


@dataclass
class Model:
    weights: np.ndarray  # (BUCKETS,) float32
    bias: float

    def scores(self, texts: pa.Array | list[str]) -> np.ndarray:
        return 1 / (1 + np.exp(-(features(texts) @ self.weights + self.bias)))

    def to_bytes(self, metrics: dict) -> bytes:
        out = io.BytesIO()
        np.savez_compressed(out, weights=self.weights, bias=np.float64(self.bias),
                            meta=np.frombuffer(json.dumps({"format": FORMAT, **metrics}).encode(), np.uint8))
        return out.getvalue()


@dataclass
class FastTextModel:
    """A fastText supervised model read from a local `.bin`; the score is `label`'s probability."""
    path: str
    label: str

    def scores(self, texts: pa.Array | list[str]) -> np.ndarray:
        model = _fasttext(self.path)
        texts = texts.to_pylist() if isinstance(texts, pa.Array) else texts
        return np.array([dict((lab, p) for p, lab in model.f.predict(" ".join((t or "").split()) + "\n", -1, 0.0,
                                                                      "replace")).get(self.label, 0.0)
                         for t in texts])


@lru_cache(maxsize=2)
def _fasttext(path: str):
    import fasttext  # from fasttext-predict: prediction only

    return fasttext.load_model(path)


def train(positive: list[str], negative: list[str], settings: QualityTrainSettings) -> tuple[Model, dict]:
    """The model fitted on all but the held-out share of each class, and its held-out figures."""
    if not positive or not negative:
        raise QualityModelError(f"preprocess.quality_classifier.train: {len(positive)} positive and {len(negative)} "
                                "negative documents; both classes need documents")
    texts = positive + negative
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    rng = np.random.default_rng(settings.seed)
    held = np.zeros(len(texts), dtype=bool)
    for cls in (1, 0):
        members = np.flatnonzero(labels == cls)
        held[rng.choice(members, max(1, round(settings.holdout * len(members))), replace=False)] = True
    x = features(texts)
    model = fit(x[~held], labels[~held], settings.l2)
    predicted = (x[held] @ model.weights + model.bias) > 0
    truth = labels[held] == 1
    tp, fp, fn = int((predicted & truth).sum()), int((predicted & ~truth).sum()), int((~predicted & truth).sum())
    metrics = {"train_documents": {"positive": int((labels[~held] == 1).sum()), "negative": int((labels[~held] == 0).sum())},
               "held_out": {"positive": int(truth.sum()), "negative": int((~truth).sum()),
                            "precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, tp + fn), 4),
                            "accuracy": round(float((predicted == truth).mean()), 4)}}
    return model, metrics


def fit(x: sparse.csr_matrix, y: np.ndarray, l2: float) -> Model:
    """L2-penalised logistic regression by L-BFGS: the mean log loss and its gradient in sparse products."""
    n = x.shape[0]

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        p = 1 / (1 + np.exp(-z))
        value = np.mean(np.logaddexp(0, z) - y * z) + l2 / 2 * w @ w
        residual = (p - y) / n
        return value, np.r_[x.T @ residual + l2 * w, residual.sum()]

    result = optimize.minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 200})
    return Model(weights=result.x[:-1].astype(np.float32), bias=float(result.x[-1]))


def matching_files(uri: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The filesystem of `uri` and the files it names (a glob, or one path that exists)."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, sorted(fs.glob(path)) if glob.has_magic(path) else ([path] if fs.isfile(path) else [])


def read_documents(uri: str, text_field: str, key: str) -> list[str]:
    """The texts of every JSONL or Parquet file `uri` names, with the file and line of a bad one."""
    fs, paths = matching_files(uri)
    if not paths:
        raise QualityModelError(f"{key}: {uri} matches no file")
    texts = []
    for path in paths:
        with fs.open(path, "rb", compression="infer") as stream:
            if path.endswith(".parquet"):
                table = pq.read_table(stream)
                if text_field not in table.column_names:
                    raise QualityModelError(f"{key}: {path} has no column {text_field!r}")
                if not pa.types.is_string(table.schema.field(text_field).type):
                    raise QualityModelError(f"{key}: {path} column {text_field!r} is "
                                            f"{table.schema.field(text_field).type}, expected strings")
                texts += table[text_field].fill_null("").to_pylist()
                continue
            for line_no, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8"), 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)[text_field]
                except (ValueError, KeyError, TypeError) as e:
                    problem = f"no field {text_field!r}" if isinstance(e, (KeyError, TypeError)) else f"not JSON ({e})"
                    raise QualityModelError(f"{key}: {path} line {line_no}: {problem}") from None
                if not isinstance(text, str):
                    raise QualityModelError(f"{key}: {path} line {line_no}: field {text_field!r} is "
                                            f"{type(text).__name__}, expected a string")
                texts.append(text)
    return texts


def load(settings: QualityClassifierSettings) -> tuple[Model | FastTextModel, bytes]:
    """The model at `settings.path` and its file's bytes."""
    path = Path(settings.path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise QualityModelError(f"preprocess.quality_classifier.path {settings.path}: {e.strerror or e}") from None
    if path.suffix in (".bin", ".ftz"):
        try:
            labels = [label for _, label in _fasttext(str(path)).f.predict("\n", -1, 0.0, "replace")]
        except Exception as e:  # fastText raises plain exceptions naming the file problem
            raise QualityModelError(f"preprocess.quality_classifier.path {settings.path}: not a fastText model ({e})") from None
        if settings.positive_label not in labels:
            raise QualityModelError(f"preprocess.quality_classifier.path {settings.path}: has no label "
                                    f"{settings.positive_label!r} (labels: {', '.join(labels)})")
        model = FastTextModel(str(path), settings.positive_label)
        return model, data
    try:
        stored = np.load(io.BytesIO(data))
        meta = json.loads(stored["meta"].tobytes())
        assert meta.get("format") == FORMAT and stored["weights"].shape == (BUCKETS,)
        return Model(stored["weights"], float(stored["bias"])), data
    except Exception:
        raise QualityModelError(f"preprocess.quality_classifier.path {settings.path}: not a curate quality model "
                                f"({FORMAT}) or a fastText .bin") from None


def prepare(settings: QualityClassifierSettings) -> tuple[Model | FastTextModel, bytes, dict]:
    """(model, its file, what the manifest says of it): trained on the user's documents, or read from path."""
    if settings.path:
        model, data = load(settings)
        origin, metrics = settings.path, {}
    else:
        key = "preprocess.quality_classifier.train"
        t = settings.train
        model, metrics = train(read_documents(t.positive, t.text_field, f"{key}.positive"),
                               read_documents(t.negative, t.text_field, f"{key}.negative"), t)
        data, origin = model.to_bytes(metrics), f"trained on {t.positive} (positive) and {t.negative} (negative)"
    suffix = Path(settings.path).suffix if isinstance(model, FastTextModel) else ".npz"
    return model, data, {"file": f"quality_classifier{suffix}", "sha256": hashlib.sha256(data).hexdigest(),
                         "origin": origin, **metrics}


def filter_quality_classifier(table: pa.Table, settings: QualityClassifierSettings) -> tuple[pa.Table, pa.Table]:
    if settings._model is None:
        raise QualityModelError("preprocess.quality_classifier: the run has not attached its model")
    scores = settings._model.scores(table["text"].combine_chunks())
    table = table.append_column("quality_score", pa.array(scores, pa.float64()))
    return split_by_checks(table, [Check("quality_classifier.min_score", scores < settings.min_score,
                                         np.array([f"{s:.3f}" for s in scores], dtype=object),
                                         f"< {settings.min_score}")])
