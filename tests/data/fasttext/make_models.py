"""Makes the fastText models beside this file, and what fastText itself says of them (expected.json), which
tests/test_fasttext_vectors.py checks curate's reader against. Needs fastText's trainer, which curate does not
depend on (fasttext-wheel: its training and vectors work under NumPy 2, its predict does not):

    pip install --target /tmp/ftw fasttext-wheel==0.9.2
    PYTHONPATH=/tmp/ftw .venv/bin/python tests/data/fasttext/make_models.py
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import fasttext

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "e2e" / "part-a.jsonl.gz"
TEXTS = ["the river had been rising", "The River Had been rising, für 3 days", "</s> zzzqqq", "",
         "naïve café 東京 rising", "one\ttab  and   spaces"]
WORDS = ["river", "zzzqqq", "東京", "</s>"]


def main() -> None:
    docs = [json.loads(line)["text"].replace("\n", " ") for line in gzip.open(CORPUS, "rt", encoding="utf-8")]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(docs))
    model = fasttext.train_unsupervised(f.name, model="skipgram", dim=8, minCount=3, bucket=1000, epoch=5,
                                        minn=3, maxn=5, thread=1)
    model.save_model(str(HERE / "skipgram.bin"))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(f"__label__{'long' if len(d.split()) > 200 else 'short'} {d}" for d in docs))
    fasttext.train_supervised(f.name, dim=2, bucket=0, epoch=1, minCount=5, thread=1).save_model(
        str(HERE / "supervised.bin"))
    expected = {"sentences": {t: model.get_sentence_vector(t).tolist() for t in TEXTS},
                "words": {w: model.get_word_vector(w).tolist() for w in WORDS}}
    (HERE / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
