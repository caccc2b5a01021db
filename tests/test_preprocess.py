import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.text.preprocess import PreprocessSettings, preprocess
from tasks.text.preprocess.c4 import C4Settings, filter_c4
from tasks.text.preprocess.gopher_quality import GopherQualitySettings, filter_gopher_quality, gopher_signals
from tasks.text.preprocess.gopher_repetition import (GopherRepetitionSettings, duplicate_elements,
                                                      filter_gopher_repetition, ngram_chars)
from tasks.text.preprocess.language import LanguageSettings, filter_language
from tasks.text.preprocess.length import LengthSettings, filter_length
from tasks.text.preprocess.normalise import NormaliseSettings, normalise_texts
from tasks.text.preprocess.pii import PIISettings, redact_pii
from tasks.text.preprocess.words import SPACE, word_counts
from tasks.text.utf8 import every_character

ENGLISH = ("The committee met on Monday to discuss the budget for the coming year. Members agreed that the "
           "library should have longer opening hours, and that the park needs new benches. The mayor thanked "
           "everyone for their work and said the town would publish the full report with the minutes of the "
           "meeting next week. Several residents asked questions about the road repairs planned for spring. "
           "The meeting ended at nine.")


def table(*texts):
    n = len(texts)
    return pa.table({"id": [f"d{i}" for i in range(n)], "text": list(texts), "source": ["s"] * n,
                     "source_index": list(range(n)), "meta": ["{}"] * n})


def rejected_rules(rejected):
    return dict(zip(rejected["id"].to_pylist(), rejected["rule"].to_pylist()))


def test_words_split_at_exactly_the_code_points_arrow_splits_at():
    between = pc.binary_join_element_wise("a", every_character().cast(pa.string()), "a", "")
    splits = np.asarray(pc.list_value_length(pc.utf8_split_whitespace(between))) == 2
    splits[0xD800:0xE000] = False  # surrogates, never in UTF-8 text, stand as U+FFFD there
    assert np.array_equal(SPACE == 1, splits)


def test_word_counts_and_longest_word_per_text():
    counts, longest = word_counts(pa.array(["  héllo  wörld\u3000x ", "", "a\u00a0bb\u2003ccc", "\n\t "]))
    assert counts.tolist() == [3, 0, 3, 0]
    assert longest.tolist() == [5, 0, 3, 0]


def test_gopher_word_signals_trim_punctuation_and_lower_case_unicode():
    m = gopher_signals(pa.array(["«THE» … ÜBER über Der x", "", "#a ....... b..… ## c"]), ["the", "über"])
    assert m["n_words"].tolist() == [5, 0, 3]  # "…" is a symbol word: punctuation only
    assert m["avg_word_length"].tolist() == [3.0, 0, 1.0]  # THE, ÜBER, über, Der, x: 15 characters
    assert m["alpha_words_ratio"].tolist() == [5 / 6, 0, 3 / 5]
    assert m["stop_words"].tolist() == [3, 0, 0]  # «THE», ÜBER, über; not Der
    assert m["hash_ratio"].tolist() == [0, 0, 3 / 5]
    assert m["ellipsis_ratio"].tolist() == [1 / 6, 0, 3 / 5]  # "......." holds two "...", then one "…"


def test_duplicate_lines_and_paragraphs_of_the_trimmed_text():
    texts = pa.array(["", "a\nb\na\n\na", "\u3000 x\n\n\nyy\n\nx \u2003", "é\né\n"])
    lines, line_chars = duplicate_elements(texts, 1)
    paragraphs, paragraph_chars = duplicate_elements(texts, 2)
    assert (lines.tolist(), line_chars.tolist()) == ([0, 0.5, 1 / 3, 0.5], [0, 2, 1, 1])  # é: 1 character
    assert (paragraphs.tolist(), paragraph_chars.tolist()) == ([0, 0, 1 / 3, 0], [0, 0, 1, 0])


def test_ngram_chars_count_the_top_ngram_and_cover_repeats_once():
    top, dup = ngram_chars(pa.array(["x", "a b a b a b", "", "one two three one two four"]), 5)
    # "a b" at words 0, 2, 4 and "b a" at 1, 3: top (1 + 1 + 1 space) x 3 = 9; repeats cover words 2-5
    assert top[1, 2:].tolist() == [9, 10, 14, 0]
    assert dup[1, 2:].tolist() == [4, 4, 4, 0]
    assert top[3, 2:].tolist() == [14, 0, 0, 0]  # "one two" twice: (3 + 3 + 1 space) x 2
    assert dup[3, 2:].tolist() == [6, 0, 0, 0]
    assert not top[[0, 2]].any() and not dup[[0, 2]].any()


def test_normalise_strips_ansi_control_repairs_mojibake_and_cleans_whitespace():
    texts = pa.array(["\x1b[1;31mred\x1b[0m text\x07 here  \r\n\r\n\r\n\r\nnext\u00a0line ",
                      "cafÃ© dÃ©jÃ  vu", "e\u0301", "  keep   inner  spaces\n\tand tabs", None, "ﬁ e\u0301"])
    out = normalise_texts(texts, NormaliseSettings()).to_pylist()
    assert out == ["red text here\n\nnext line", "café déjà vu", "\u00e9", "keep   inner  spaces\n\tand tabs", None,
                   "ﬁ \u00e9"]
    nfkc = normalise_texts(texts, NormaliseSettings(unicode_form="NFKC")).to_pylist()
    assert nfkc[-1] == "fi \u00e9"


def test_length_bounds():
    kept, rejected = filter_length(table("", "abc", "abcdef"), LengthSettings(min_chars=1, max_chars=5))
    assert kept["id"].to_pylist() == ["d1"]
    assert rejected["reason"].to_pylist() == ["length.min_chars: 0 < 1", "length.max_chars: 6 > 5"]


def test_language_identification_with_allowed_list_and_min_score():
    german = ("Die Stadt hat am Montag beschlossen, die Bibliothek länger zu öffnen und im Park neue Bänke "
              "aufzustellen. Der Bürgermeister dankte allen für ihre Arbeit.")
    kept, rejected = filter_language(table(ENGLISH, german, "1234 5678"), LanguageSettings(allowed=["en"]))
    assert kept["id"].to_pylist() == ["d0"] and kept["lang"].to_pylist() == ["en"]
    assert kept["lang_score"][0].as_py() > 0.9
    rules = rejected_rules(rejected)
    assert rules["d1"] == "language.allowed"
    assert rejected.filter(pa.compute.equal(rejected["id"], "d1"))["reason"][0].as_py() == \
        "language.allowed: de not in ['en']"
    assert rules["d2"] == "language.min_score"


def test_gopher_quality_rules_name_the_failing_measure():
    short = "The cat sat on the mat with the hat."
    hashes = " ".join(["#tag the word"] * 30)
    no_stop = " ".join(["alpha beta gamma delta"] * 20)
    bullets = "\n".join(["- item the list with"] * 20)
    kept, rejected = filter_gopher_quality(table(ENGLISH, short, hashes, no_stop, bullets), GopherQualitySettings())
    assert kept["id"].to_pylist() == ["d0"]
    assert rejected["reason"].to_pylist() == [
        "gopher_quality.min_doc_words: 9 < 50 (n_words)",
        "gopher_quality.max_symbol_word_ratio: 0.333 > 0.1 (hash_ratio)",
        "gopher_quality.min_stop_words: 0 < 2 (stop_words)",
        "gopher_quality.max_bullet_lines_ratio: 1 > 0.9 (bullet_lines_ratio)",
    ]


def test_gopher_repetition_lines_paragraphs_and_ngrams():
    repeated_lines = "\n".join(["the same line again"] * 4 + ["one different line here"])
    repeated_ngram = " ".join(["to be or not to be"] * 10)
    kept, rejected = filter_gopher_repetition(table(ENGLISH, repeated_lines, repeated_ngram),
                                              GopherRepetitionSettings())
    assert kept["id"].to_pylist() == ["d0"]
    assert rejected["rule"].to_pylist() == ["gopher_repetition.dup_line_frac", "gopher_repetition.top_2_gram"]
    assert rejected["reason"][0].as_py() == "gopher_repetition.dup_line_frac: 0.6 > 0.3 (duplicate lines)"


def test_gopher_repetition_duplicated_ngram_coverage():
    # 20 unique words, then the first 10 again: repeated 5-grams cover 10 words, 30 of the 119 characters.
    words = [f"w{i:02d}" for i in range(20)]
    text = " ".join(words + words[:10])
    only_5 = GopherRepetitionSettings(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None,
                                      dup_para_char_frac=None, top_n_grams=[], dup_n_grams=[(5, 0.25)])
    kept, rejected = filter_gopher_repetition(table(text), only_5)
    assert rejected["reason"].to_pylist() == [
        "gopher_repetition.dup_5_gram: 0.252 > 0.25 (characters in duplicated 5-grams)"]


def test_c4_removes_lines_and_rejects_documents():
    good = "\n".join([
        "This line ends with a full stop.", "no terminal punctuation here", "Too short.",
        "Please enable javascript to see this page.", "Read our privacy policy before you continue.",
        "Second good line is here. It has two sentences.", "A third fine line for the count!",
        "And a fourth line that is kept?", "Wikipedia style citation stays kept[1]."])
    curly = "\n".join(["Code like if (x) { y } is not prose."] + ["A fine sentence is here."] * 5)
    lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing."
    kept, rejected = filter_c4(table(good, curly, lorem), C4Settings())
    assert kept["text"].to_pylist() == [
        "This line ends with a full stop.\nSecond good line is here. It has two sentences.\n"
        "A third fine line for the count!\nAnd a fourth line that is kept?\nWikipedia style citation stays kept."]
    assert kept["c4_lines_removed"].to_pylist() == [4]
    assert rejected["reason"].to_pylist() == ["c4.curly_bracket: line 1 has '{'", "c4.lorem_ipsum: line 1 has 'lorem ipsum'"]
    assert rejected["text"][0].as_py() == curly  # rejected rows keep the text the rule saw


def test_pii_redaction_placeholders_and_counts():
    text = ("Mail jane.doe@example.org or call +1 415-555-0132; server 192.168.10.7, "
            "card 4111 1111 1111 1111. Released 2023-11-22, version 2.6.32.")
    out = redact_pii(table(text), PIISettings())
    assert out["text"].to_pylist() == [
        "Mail <EMAIL> or call <PHONE>; server <IP_ADDRESS>, card <CREDIT_CARD>. Released 2023-11-22, version 2.6.32."]
    assert out["pii_redactions"].to_pylist() == [4]


def test_preprocess_accounts_for_every_row():
    t = table(ENGLISH, "", "short text", ENGLISH + " Contact me at a@b.co for details.")
    kept, rejected = preprocess(t, PreprocessSettings())
    assert kept.num_rows + rejected.num_rows == t.num_rows
    assert kept["id"].to_pylist() == ["d0", "d3"]
    assert rejected_rules(rejected) == {"d1": "length.min_chars", "d2": "language.min_score"}
    assert "<EMAIL>" in kept["text"][1].as_py()
    assert set(kept.column_names) >= {"id", "text", "source", "meta", "lang", "lang_score", "pii_redactions"}
