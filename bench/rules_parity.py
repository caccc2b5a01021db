"""Rule parity: curate's Gopher repetition, Gopher quality and C4 rules against datatrove's, document by
document, on the same texts.

    .venv/bin/python bench/rules_parity.py [--docs 10000] [--sample]

Each family of rules runs on every document on its own (not after the others), in both tools, with both
tools' default thresholds; datatrove 0.10.1 runs in the throw-away venv of bench/dedup_vs_datatrove.py.
Prints per family how many documents both keep, both reject, and only one rejects, then the rules behind
the disagreements (curate's rule, datatrove's reason): the systematic differences the README explains.
`--sample` uses the real sample's 3,413 documents as they are; by default the benchmark corpus
(bench/corpus.py, the same as bench/pipeline_vs_datatrove.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.corpus import SAMPLE, build  # noqa: E402
from bench.dedup_vs_datatrove import datatrove_python  # noqa: E402
from tasks.text.preprocess import PreprocessSettings  # noqa: E402
from tasks.text.preprocess.c4 import filter_c4  # noqa: E402
from tasks.text.preprocess.gopher_quality import filter_gopher_quality  # noqa: E402
from tasks.text.preprocess.gopher_repetition import filter_gopher_repetition  # noqa: E402

DATATROVE_JOB = '''
import json, sys
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

families = {"gopher_repetition": GopherRepetitionFilter(), "gopher_quality": GopherQualityFilter(),
            "c4": C4QualityFilter()}
with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w") as out:
    for line in f:
        row = json.loads(line)
        verdicts = {}
        for name, rule in families.items():
            result = rule.filter(Document(text=row["text"], id=row["id"]))
            verdicts[name] = None if result is True else (result[1] if isinstance(result, tuple) else "rejected")
        out.write(json.dumps({"id": row["id"], **verdicts}) + "\\n")
'''

FAMILIES = {"gopher_repetition": filter_gopher_repetition, "gopher_quality": filter_gopher_quality, "c4": filter_c4}


def curate_verdicts(table: pa.Table) -> dict[str, dict[str, str | None]]:
    """{family: {id: the rule that rejected it, or None}}: each family on every document."""
    settings = PreprocessSettings()
    out = {}
    for family, rule in FAMILIES.items():
        _, rejected = rule(table, getattr(settings, family))
        by_id = dict(zip(rejected["id"].to_pylist(), rejected["rule"].to_pylist()))
        out[family] = {i: by_id.get(i) for i in table["id"].to_pylist()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--sample", action="store_true", help="the real sample's documents as they are")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench")
    args = parser.parse_args()
    if args.sample:
        rows = [json.loads(line) for line in gzip.open(SAMPLE, "rt", encoding="utf-8")]
        table = pa.table({"id": [str(r["id"]) for r in rows], "text": [r["text"] for r in rows]})
    else:
        table = build(args.docs, words=750)
    args.work.mkdir(parents=True, exist_ok=True)
    docs, verdicts = args.work / "parity-docs.jsonl", args.work / "parity-datatrove.jsonl"
    with open(docs, "w", encoding="utf-8") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    subprocess.run([str(datatrove_python(args.work)), "-c", DATATROVE_JOB, str(docs), str(verdicts)], check=True)
    theirs = {row["id"]: row for row in map(json.loads, open(verdicts))}
    ours = curate_verdicts(table)
    print(f"{table.num_rows:,} documents ({'the real sample' if args.sample else 'bench/corpus.py'}); "
          "each family on every document")
    for family in FAMILIES:
        pairs = Counter((ours[family][i] is None, theirs[i][family] is None) for i in ours[family])
        agree = pairs[True, True] + pairs[False, False]
        print(f"\n{family}: agree on {agree:,} of {table.num_rows:,} ({agree / table.num_rows:.1%}); both keep "
              f"{pairs[True, True]:,}, both reject {pairs[False, False]:,}, only curate rejects {pairs[False, True]:,}, "
              f"only datatrove rejects {pairs[True, False]:,}")
        reasons = Counter((ours[family][i], theirs[i][family]) for i in ours[family]
                          if (ours[family][i] is None) != (theirs[i][family] is None))
        for (mine, other), n in reasons.most_common(8):
            print(f"  {n:6,}  curate {mine or 'keeps':<45} datatrove {other or 'keeps'}")


if __name__ == "__main__":
    main()
