import re

import pyarrow as pa

from tasks.export.report import bar_chart, rejections, render
from tasks.text.stats import LENGTH_BINS, charts, length_bins

STAGES = {"collect": {"in": 10, "kept": 9, "rejected": {}, "quarantined": 1},
          "preprocess": {"in": 9, "kept": 6, "rejected": {"c4.curly_bracket": 1, "language.allowed": 2}, "quarantined": 0},
          "dedup": {"in": 6, "kept": 5, "rejected": {"dedup.exact": 1}, "quarantined": 0}}


def test_length_bins_count_characters_not_bytes():
    texts = pa.chunked_array([["é" * 99, "x" * 100, "y" * 299, "z" * 100_000]])
    assert LENGTH_BINS[:3] == ("0-100", "100-300", "300-1,000") and LENGTH_BINS[-1] == ">=100,000"
    assert length_bins(texts) == {"0-100": 1, "100-300": 2, ">=100,000": 1}


def test_rejections_cover_every_stage_and_quarantine_most_first():
    assert rejections(STAGES) == [("preprocess: language.allowed", 2), ("preprocess: c4.curly_bracket", 1),
                                  ("dedup: dedup.exact", 1), ("collect: quarantined (malformed)", 1)]
    repeated = {**STAGES, "dedup": {**STAGES["dedup"], "quarantined": 1}}
    assert rejections(repeated)[-1] == ("dedup: quarantined (repeated id)", 1)


def test_bar_chart_scales_to_the_largest_bar_and_labels_values():
    svg = bar_chart("t", [("a", 4), ("b", 1), ("c", 0)], "#000")
    assert re.findall(r'<rect [^>]*width="(\d+)"', svg) == ["420", "105", "0"]
    assert [t for t in re.findall(r">([^<]+)</text>", svg)] == ["a", "4", "b", "1", "c", "0"]
    assert "nothing here" in bar_chart("t", [], "#000", "nothing here")


def test_report_has_the_four_plots_and_escapes_names():
    manifest = {"name": "<corpus>", "version": "v2", "run_id": "r", "created": "now", "base_version": "v1",
                "documents": 12, "sources": [{}], "stages": STAGES,
                "splits": {"train": {"rows": 12, "added": 5, "shards": [{}, {}]}},
                "gates": [{"gate": "raw", "success": True}, {"gate": "dedup", "success": False}],
                "lengths": {"100-300": 7, "300-1,000": 5}, "languages": {"en": 11, "de": 1},
                "dedup": {"cluster_sizes": {"2": 3, "10": 1}}}
    html = render(manifest, charts(manifest))
    assert "&lt;corpus&gt;" in html and "<corpus>" not in html
    assert "12 documents on top of <b>v1</b>" in html and "dedup: FAILED" in html
    assert html.count("<svg") == 4
    assert "<title>10 documents: 1</title>" in html and "<title>de: 1</title>" in html
    assert "<tr><td>train</td><td>12</td><td>5</td><td>2</td></tr>" in html


def test_examples_show_the_value_that_broke_the_rule_and_a_duplicate_beside_what_was_kept(tmp_path):
    from tasks.export.report import examples_html, gather_examples, why
    from tasks.io.layout import RunPaths
    from tasks.io.storage import Store
    from tasks.text import TEXT

    store, paths = Store(str(tmp_path)), RunPaths("r")
    rejected = pa.table({"id": ["a", "b"], "text": ["too short", "The cat sat."], "duplicate_of": [None, "k"],
                         "rule": ["gopher_quality.min_doc_words", "dedup.near"],
                         "reason": ["gopher_quality.min_doc_words: 2 < 50 (n_words)", "duplicate of k (cluster of 2)"]})
    store.write_table(rejected.filter(pa.array([True, False])), *paths.rejected("preprocess", "p.parquet"))
    store.write_table(rejected.filter(pa.array([False, True])), *paths.rejected("dedup", "p.parquet"))
    store.write_table(pa.table({"id": ["k", "z"], "text": ["The cat sat!", "other"]}), *paths.stage("dedup", "p.parquet"))
    examples = gather_examples(store, paths, ["p.parquet"], [])
    assert examples["dedup.near"][0]["representative"] == {"id": "k", "text": "The cat sat!"}
    page = examples_html(examples, TEXT.example, "documents")
    assert "gopher_quality.min_doc_words: <b class=value>2</b> &lt; 50 (n_words)" in page
    assert why("c4.curly_bracket: line 85 has '{'", "c4.curly_bracket") == \
        "c4.curly_bracket: <b class=value>line 85</b> has &#x27;{&#x27;"
    assert why("language.allowed: fr not in ['en']", "language.allowed") == \
        "language.allowed: <b class=value>fr</b> not in [&#x27;en&#x27;]"
    assert ("<div class=pair><div class=ex><p class=keep>kept</p><blockquote>The cat sat!</blockquote></div>"
            "<div class=ex><p class=why>removed: duplicate of k (cluster of 2)</p><blockquote>The cat sat.</blockquote>"
            "</div></div>") in page
