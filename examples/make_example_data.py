"""Cut a small real slice of ../shared/data/sample_text.jsonl.gz into a folder, plant known duplicates and
add broken input. Used for examples/data (the demo) and tests/data (the end-to-end test); the planted
duplicates are listed in planted.json so tests can check that dedup finds exactly them.

    python examples/make_example_data.py OUT_DIR N_DOCS
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pyarrow as pa

from tasks.text.preprocess import PreprocessSettings, preprocess

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sample_text.jsonl.gz"


def near_copy(text: str) -> str:
    """Change one word in every 60: a near-duplicate with word-5-gram Jaccard around 0.85-0.9."""
    words = text.split(" ")
    for i in range(30, len(words), 60):
        words[i] = words[i].upper() + "x"
    return " ".join(words)


def main(out: Path, n_docs: int) -> None:
    rows = [json.loads(line) for line in gzip.open(SAMPLE, "rt", encoding="utf-8")]
    rows = [r for r in rows if len(r["text"]) < 30_000]
    step = max(1, len(rows) // n_docs)
    picked = rows[::step][:n_docs]
    table = pa.table({"id": [r["id"] for r in picked], "text": [r["text"] for r in picked],
                      "source": ["x"] * len(picked), "source_index": list(range(len(picked))),
                      "meta": ["{}"] * len(picked)})
    kept, _ = preprocess(table, PreprocessSettings())
    good = [r for r in picked if r["id"] in set(kept["id"].to_pylist()) and 2000 < len(r["text"]) < 20000]
    a, b, c = good[0], good[1], good[2]
    planted = [
        {**a, "id": a["id"] + "-copy", "kind": "exact", "duplicate_of": a["id"]},
        {**b, "id": b["id"] + "-spaced", "text": "  " + b["text"].replace(" ", "  ") + "\n", "kind": "exact",
         "duplicate_of": b["id"]},
        {**c, "id": c["id"] + "-near", "text": near_copy(c["text"]), "kind": "near", "duplicate_of": c["id"]},
    ]
    out.mkdir(parents=True, exist_ok=True)
    half = len(picked) // 2
    for name, part in (("part-a.jsonl.gz", picked[:half]), ("part-b.jsonl", picked[half:] + planted)):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(out / name, "wt", encoding="utf-8") as f:
            for r in part:
                f.write(json.dumps({k: v for k, v in r.items() if k not in ("kind", "duplicate_of")},
                                   ensure_ascii=False) + "\n")
    (out / "planted.json").write_text(json.dumps(
        [{"id": p["id"], "kind": p["kind"], "duplicate_of": p["duplicate_of"]} for p in planted], indent=1))
    good_line = json.dumps({"id": "broken-ok", "text": good[3]["text"], "source": "hand-made"})
    with open(out / "broken.jsonl", "wb") as f:
        f.write(good_line.encode() + b"\n")                                 # line 1: fine
        f.write(b'{"id": "broken-1", "text": "unterminated\n')              # line 2: invalid JSON
        f.write(b'{"id": "broken-2", "body": "no text field"}\n')           # line 3: missing text field
        f.write(b'{"id": "broken-3", "text": "bad \xff\xfe bytes"}\n')      # line 4: invalid UTF-8
        f.write(b'["not", "an", "object"]\n')                               # line 5: not an object
        f.write(b'{"id": "broken-5", "text": null}\n')                      # line 6: null text
    data = gzip.compress(("\n".join(json.dumps({"id": f"trunc-{i}", "text": r["text"]}) for i, r in
                                    enumerate(good[4:7])) + "\n").encode())
    (out / "truncated.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])    # cut mid-stream
    print(f"{out}: {len(picked)} documents + {len(planted)} planted duplicates + broken input")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
