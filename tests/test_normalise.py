"""Normalisation and decoding: encodings, line-break hyphens, NFC, spacing, derived description."""

import hashlib
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.describe import describe_text
from archive.extract import ExtractionError
from archive.extract.text import decode_text
from archive.normalise import DEBRIS, KINDS_TABLE_LIMIT, UNSTABLE, _kinds_table, nfc, normalise_text


def text_sha(data: bytes) -> str:
    text, _, _ = decode_text(data)
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


def test_seed_gives_the_same_text_in_utf8_cp1252_and_utf16(seeds_dir):
    for path in sorted(seeds_dir.iterdir()):
        text = path.read_text(encoding="utf-8")
        digests = {enc: text_sha(text.encode(enc)) for enc in ("utf-8", "cp1252", "utf-16", "utf-16-le", "utf-8-sig")}
        assert len(set(digests.values())) == 1, (path.name, digests)


def test_cp1252_curly_quotes_are_not_read_as_another_code_page(seeds_dir):
    text = (seeds_dir / "002_bdbfc77629c1cea2.txt").read_text(encoding="utf-8")
    decoded, encoding, notes = decode_text(text.encode("cp1252"))
    assert encoding == "cp1252"
    assert decoded == text
    assert any(ord(ch) > 127 for ch in text)  # the test means something only with non-ASCII in it


def test_line_endings_and_spacing():
    assert normalise_text("a  b\t\tc\r\nd\re  \n\n\n\nf ") == "a b c\nd\ne\n\nf"


def test_nfc_composes_decomposed_characters():
    decomposed = "Lefe\u0300vre cafe\u0301"
    out = normalise_text(decomposed)
    assert out == "Lefèvre café"
    assert unicodedata.is_normalized("NFC", out)


# Characters where NFC does something: combining marks (reordered and composed),
# singletons (OHM SIGN, ANGSTROM SIGN, GREEK QUESTION MARK), starters that
# compose with the one before them (Bengali and Oriya vowel signs), Hangul jamo
# (composed by rule) and syllables, CJK compatibility ideographs, a letter
# outside the Basic Multilingual Plane; and stable neighbours for them.
NFC_EDGES = ("aeoAEO \n-\u00e9\u00c5\u2014\u201c\u0301\u0308\u0327\u0323\u0345\u031b\u0340\u2126\u212b"
             "\u037e\u0387\u09c7\u09be\u09d7\u0b47\u0b3e\u0b56\u1100\u1161\u11a8\uac00\uf900\u3099\u304b"
             "\U0001d157\U0001d165\U00011099\U000110ba")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet=NFC_EDGES + "\ud800\udfff", max_size=40),
                 st.text(st.characters(codec=None, exclude_categories=()), max_size=40), st.text()))
def test_nfc_by_pieces_is_unicodedatas_nfc(text):
    assert nfc(text) == unicodedata.normalize("NFC", text)


def test_lone_surrogates_pass_through_normalisation():
    """A PDF's or a web page's text may hold one; NFC leaves it, and so does normalise_text."""
    assert normalise_text("cafe\u0301 \ud800 x\udfff\u0301") == "café \ud800 x\udfff\u0301"


def test_nfc_by_pieces_on_real_and_decomposed_texts(seeds_dir):
    for path in sorted(seeds_dir.iterdir()):
        text = path.read_text(encoding="utf-8")
        for variant in (text, unicodedata.normalize("NFD", text), unicodedata.normalize("NFKD", text) + "\u0301"):
            assert nfc(variant) == unicodedata.normalize("NFC", variant), path.name


def test_characters_left_alone_by_nfc_are_never_joined_to_the_one_before():
    """The stable characters are read off the decompositions below KINDS_TABLE_LIMIT; no character above it
    decomposes into a pair that ends with one of them (checked over all of Unicode, not assumed)."""
    table = _kinds_table()
    stable = {code for code in range(KINDS_TABLE_LIMIT) if not table[code] & UNSTABLE}
    assert len(stable) > 10_000 and ord("e") in stable and 0x0301 not in stable and 0x09BE not in stable
    for code in range(KINDS_TABLE_LIMIT, 0x110000):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            assert int(parts[1], 16) not in stable, hex(code)


def test_nfc_never_makes_or_removes_a_dropped_character_or_a_space():
    """normalise_text looks for them before NFC: what NFC makes of a character has one only if it had one."""
    from archive.normalise import _DROPPED_OR_SPACE

    for code in range(0x110000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        had = bool(_DROPPED_OR_SPACE.match(char))
        assert had == bool(_DROPPED_OR_SPACE.search(unicodedata.normalize("NFC", char))), hex(code)
        if code < KINDS_TABLE_LIMIT:
            assert had == bool(_kinds_table()[code] & DEBRIS), hex(code)


def spacing_by_lines(text: str) -> str:
    """The definition of normalise_text's spacing: each line's words joined by one space, dropped characters out."""
    text = re.sub("[\u200b\u200c\u200d\u2060\ufeff\u00ad\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text)
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


SPACING_EDGES = " \n\t\x0b\x1c\x1f\x85\xa0\u1680\u2000\u2009\u2028\u2029\u202f\u3000\u200b\u00ad\x07\ufeffab-"


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet=SPACING_EDGES, max_size=40), st.text()))
def test_spacing_is_the_same_as_joining_each_lines_words(text):
    text = text.replace("\r", "").replace("\f", "")  # (made newlines before; the definition starts after)
    assert normalise_text(text) == normalise_text(spacing_by_lines(text))
    assert normalise_text(text) == spacing_by_lines(normalise_text(text))


def test_the_spaces_made_one_are_every_whitespace_but_the_space_and_newline():
    from archive.normalise import _DROPPED_OR_SPACE, _SPACE

    spaces = {chr(code) for code in range(0x110000) if chr(code).isspace()}
    dropped = {char for char in spaces if not _SPACE.match(char) and _DROPPED_OR_SPACE.match(char)}
    assert {char for char in spaces if _SPACE.match(char)} == spaces - {" ", "\n"} - dropped
    # (carriage returns and form feeds are made newlines before: any left are debris)
    assert dropped == {"\x0b", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\x85"}


def test_line_break_hyphen_joins_a_split_word():
    assert normalise_text("the Azer-\nbaijan parliament") == "the Azerbaijan parliament"
    assert normalise_text("break-\n   water") == "breakwater"


def test_real_hyphenated_words_keep_their_hyphen():
    # The document spells "well-known" with its hyphen elsewhere: keep it at the line break.
    assert normalise_text("a well-\nknown case of a well-known kind") == "a well-known case of a well-known kind"
    # A capitalised continuation is a compound of names.
    assert normalise_text("the Soviet-\nArmenian border") == "the Soviet-Armenian border"
    # A hyphen inside a line is never touched.
    assert normalise_text("co-coordinated") == "co-coordinated"


def test_the_document_is_its_own_dictionary_for_line_break_hyphens():
    # Spelled with a hyphen elsewhere in any case: kept.
    assert normalise_text("A Well-Known name;\na well-\nknown case") == "A Well-Known name;\na well-known case"
    # Spelled both ways elsewhere: the joined form wins.
    assert normalise_text("re-enter, reenter;\nre-\nenter") == "re-enter, reenter;\nreenter"
    # Only as part of a longer hyphenated word elsewhere ("of-the" in "state-of-the-art"): not a spelling of "of-the".
    assert normalise_text("state-of-the-art;\nof-\nthe case") == "state-of-the-art;\nofthe case"
    # The hyphenated word elsewhere must be a whole word: "ill-known" does not spell "ll-known".
    assert normalise_text("ill-known; a we-\nknown") == "ill-known; a weknown"


def test_invisible_and_control_characters_are_dropped():
    assert normalise_text("in\u00addepen\u200bdence\x07 day\u00a0one") == "independence day one"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalise_is_idempotent_and_never_raises(text):
    once = normalise_text(text)
    assert normalise_text(once) == once
    assert once == once.strip()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=4096),
                 st.text().map(lambda t: t.encode("utf-8")),
                 st.text().map(lambda t: t.encode("utf-16")),
                 st.text(alphabet=st.characters(max_codepoint=0xFF)).map(lambda t: t.encode("latin-1"))))
def test_arbitrary_bytes_are_text_or_a_reason_never_a_crash(data):
    """What a file's bytes go through: identify, extract (decode), normalise, describe."""
    from archive.extract import extract
    from archive.identify import identify

    try:
        extracted = extract(data, identify(data))
    except ExtractionError as exc:
        assert exc.reason and exc.detail  # set aside with a reason a person can act on
        return
    once = normalise_text(extracted.text)
    assert normalise_text(once) == once
    description = describe_text(once)
    assert description.char_count == len(once)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet="ab \n\t\x00\x07\x0b\x0c\x0e\x1f\x7f\x80\x85\x9f\xa0\xc2\xe9\u0100\u2014"),
                 st.text()))
def test_stray_controls_are_counted_as_the_pattern_finds_them(text):
    from archive.extract.text import _STRAY_CONTROLS, stray_controls

    assert stray_controls(text) == len(_STRAY_CONTROLS.findall(text))


def test_nul_bytes_in_text_are_reported_as_corrupt():
    with pytest.raises(ExtractionError) as caught:
        decode_text(b"minutes of the meeting\x00\x00 held on")
    assert caught.value.reason == "corrupt"
    assert "NUL" in caught.value.detail and "byte 22" in caught.value.detail


def test_leading_date_and_title_are_derived(seeds_dir):
    d = describe_text(normalise_text((seeds_dir / "002_bdbfc77629c1cea2.txt").read_text()))
    assert d.date == "2021-01-21"
    assert d.title == "Press-release 20 January - Day of Nationwide Sorrow in Azerbaijan"
    assert d.language == "en"
    d0 = describe_text(normalise_text((seeds_dir / "000_1b6d2751a6b6d7cc.txt").read_text()))
    assert d0.date == "2021-01-20"
    assert d0.title is None  # the first line is a long paragraph, not a heading


def test_an_impossible_date_is_noted_not_published():
    d = describe_text("date 2021-13-45 Something happened")
    assert d.date is None
    assert any("2021-13-45" in n for n in d.notes)


def test_a_date_later_in_the_text_is_not_taken():
    assert describe_text("Report\n\nOn 2021-01-20 the ceremony took place.").date is None


def _words_by_splitting(text: str) -> int:
    """The definition: whitespace-separated tokens, less those made only of punctuation."""
    return len(text.split()) - len(re.findall(r"\s[^\w\s]+(?=\s)", f" {text} "))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=st.sampled_from(list("ab-— .,\n\t\r\f\u00a0\u2028\u3000\u00ad")))))
def test_words_of_a_normalised_text_are_counted_as_splitting_would(text):
    from archive.describe import count_words

    normalised = normalise_text(text)
    assert count_words(normalised) == _words_by_splitting(normalised)


def test_words_are_counted_as_splitting_would_in_real_texts(seeds_dir):
    from archive.describe import count_words

    texts = [normalise_text(p.read_bytes().decode("utf-8", "replace"))
             for p in sorted(seeds_dir.iterdir()) if p.is_file()]
    texts += [normalise_text("word — word\n\n- a list item\n\n\n\u00a0\u00a0* another \u2028 line ...\n...")]
    counts = [count_words(text) for text in texts]
    assert counts == [_words_by_splitting(text) for text in texts]
    assert counts[-1] == 7 and all(counts)


def test_counts():
    d = describe_text("Black January: 147 civilians, well-known facts.")
    assert d.char_count == len("Black January: 147 civilians, well-known facts.")
    assert d.word_count == 6


def test_language_needs_enough_text(monkeypatch):
    assert describe_text("ok").language is None
    assert describe_text("Der Rat der Stadt hat heute beschlossen, "
                         "dass die neue Brücke im Frühling gebaut wird.").language == "de"
    from archive import describe

    monkeypatch.setattr(describe, "_classify", lambda sample: ("xx", 1.0))
    enough = " ".join(["abcd"] * 10)  # 40 letters
    assert describe.detect_language("12 " * 100 + enough) == "xx"
    assert describe.detect_language(enough[:-1] + " 1 2 3") is None  # 39
    assert describe.detect_language(" " * describe.LANGUAGE_SAMPLE_CHARS + enough) is None  # (after the sample)


def test_language_identification_gives_py3langids_own_answers(seeds_dir):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from archive.describe import LANGUAGE_SAMPLE_CHARS, _classify

    stock = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    samples = [normalise_text(p.read_bytes().decode("utf-8", "replace"))[:LANGUAGE_SAMPLE_CHARS]
               for p in sorted(seeds_dir.iterdir()) if p.is_file()]
    samples += ["Le chat dort sur la table de la cuisine depuis ce matin.",
                "Der Hund schläft seit dem Morgen im Garten.",
                "Это короткий текст на русском языке о погоде.",
                "Azərbaycan Respublikasının paytaxtı Bakı şəhəridir.",
                "これは日本語で書かれた短い文章です。", "1234 5678", ""]
    answers = [_classify(s) for s in samples]
    expected = [stock.classify(s) for s in samples]
    assert [language for language, _ in answers] == [language for language, _ in expected]
    # (the same scores summed in another order: float32 rounding apart)
    assert [probability for _, probability in answers] == pytest.approx([p for _, p in expected], abs=1e-5)
    assert {language for language, _ in answers} >= {"en", "fr", "de", "ru", "ja"}


def _walk(data: bytes) -> list[int]:
    """py3langid's byte-by-byte walk of its automaton: the state after each byte."""
    from archive.describe import _language_identifier

    model, state, states = _language_identifier(), 0, []
    for code in data:
        state = model.tk_nextmove[(model.tk_row[state] << 8) + code]
        states.append(state)
    return states


def test_the_automaton_walked_a_window_at_a_time_reaches_the_same_states(seeds_dir, monkeypatch):
    import numpy as np
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from archive import describe
    from archive.describe import AUTOMATON_WINDOW, _automaton_states, _classify, _language_identifier, _window_states

    model = _language_identifier()
    texts = [normalise_text(p.read_bytes().decode("utf-8", "replace"))
             for p in sorted(seeds_dir.iterdir()) if p.is_file()]
    texts += ["Это короткий текст на русском языке о погоде.", "これは日本語で書かれた短い文章です。", "x", ""]
    samples = [model._encode(text[:2000]) for text in texts]
    codes = [np.frombuffer(data, dtype=np.uint8) for data in samples]
    walks = [_walk(data) for data in samples]
    # The window is wide enough for this model: the quick states are the walk's, no fallback needed...
    assert [_window_states(c, AUTOMATON_WINDOW).tolist() for c in codes] == walks
    assert [_automaton_states(data).tolist() for data in samples] == walks
    # ...a narrower one is not, and the check notices and leaves the walk to py3langid, whose answers come back.
    assert any(_window_states(c, 2).tolist() != walk for c, walk in zip(codes, walks))
    monkeypatch.setattr(describe, "AUTOMATON_WINDOW", 2)
    assert any(_automaton_states(data) is None for data in samples)
    stock = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    answers, expected = [_classify(text[:2000]) for text in texts], [stock.classify(text[:2000]) for text in texts]
    assert [language for language, _ in answers] == [language for language, _ in expected]
    assert [probability for _, probability in answers] == pytest.approx([p for _, p in expected], abs=1e-5)
