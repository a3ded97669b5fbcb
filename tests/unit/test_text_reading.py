"""One normalisation pass for language and duplicates: the normal form's two paths (ASCII by
`bytes.translate`, the rest by regex) agree, the batch word hashes equal a word-by-word
reference wherever the word sits, and `read_texts` answers what the separate calls answer."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentiment_platform.services.analysis import language, minhash
from sentiment_platform.services.analysis.duplicates import (
    fingerprints,
    fingerprints_of_normals,
    normalise,
)
from sentiment_platform.services.analysis.language import LanguageDetector
from sentiment_platform.services.analysis.normal_text import MARKS, folded, normal_form
from sentiment_platform.services.analysis.text_reading import read_texts

# The definition, spelled out as the slow way: NFKC, markup out, lowercase, the words.
_MARKUP = re.compile(r"\b[RQ]T\b:?(?:\s*@\w+:?)?|https?://\S*|https?\b|www\.\S+|@\w+")
_WORD = re.compile(r"[\w" + MARKS + r"]+")


def _reference(text: str) -> bytes:
    text = _MARKUP.sub(" ", unicodedata.normalize("NFKC", text))
    return " ".join(_WORD.findall(text.lower())).encode()


PIECES = [
    "RT", "QT", "RT @user:", "@brand", "http://t.co/x", "https", "www.site.org/a", "#Tag",
    "Straße", "ÉTÉ", "été", "ﻃﻔﻼً", "Ｔｈｅ", "नमस्ते", "😂", "👍🏽", "3€", "a_b", "١٢٣",
    "can't", "ok!!", "\n", "\t", "  ", "ART", "RTs", "xRT", "ΣΊΣΥΦΟΣ", "İstanbul",
]  # fmt: skip
WORDS = st.sampled_from(PIECES) | st.text(max_size=12)
TEXTS = st.lists(WORDS, max_size=30).map(" ".join) | st.text(max_size=200)


@given(TEXTS)
@settings(max_examples=400, deadline=None)
def test_the_normal_form_is_its_definition(text: str) -> None:
    assert normal_form(text) == _reference(text)
    assert normal_form(text.encode("ascii", "ignore").decode()) == _reference(
        text.encode("ascii", "ignore").decode()
    )
    assert normalise(text) == _reference(text).decode().casefold()


def test_case_folding_is_for_duplicates_only() -> None:
    """ "ß" tells German from the rest; folding it to "ss" cost UMSAB German val 0.6 points."""
    assert normal_form("Die STRAẞE ist heiß") == "die straße ist heiß".encode()
    assert folded(normal_form("Die STRAẞE ist heiß")) == b"die strasse ist heiss"
    assert normalise("STRASSE") == normalise("Straße")


def _word_hash(word: bytes) -> int:
    """minhash.word_hashes for one word, the slow way."""
    mask = (1 << 64) - 1
    value = sum(byte * pow(minhash.BASE, i, 1 << 64) for i, byte in enumerate(word)) & mask
    value = (value + len(word) * minhash.LENGTH_MIX) & mask
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & mask
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & mask
    value ^= value >> 31
    return value >> 32


@given(st.lists(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=8), max_size=8))
@settings(max_examples=200, deadline=None)
def test_a_word_hash_does_not_depend_on_where_the_word_is(posts: list[list[bytes]]) -> None:
    """Words are split at spaces and newlines (bytes up to 0x20 never occur in a word)."""
    posts = [[bytes(max(byte, 0x21) for byte in word) for word in post] for post in posts]
    blob = b"\n".join(b" ".join(post) for post in posts)
    expected = [_word_hash(word) for post in posts for word in post]
    assert (minhash.word_hashes(blob).tolist() if posts else []) == expected


def test_a_batch_gives_each_post_the_fingerprint_it_has_alone() -> None:
    """Wider than one product matrix (minhash's chunks), with long and short posts mixed."""
    long = [" ".join(f"w{post}x{word}" for word in range(700)) for post in range(30)]
    texts = [
        t for pair in zip(long, ["short one", "a b c d e f g"] * 15, strict=True) for t in pair
    ]
    assert sum(t.count(" ") + 1 for t in texts) > minhash.CHUNK_WORDS
    assert fingerprints(texts) == [fingerprints([text])[0] for text in texts]


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


@given(st.lists(TEXTS, max_size=12))
@settings(max_examples=100, deadline=None)
def test_reading_once_equals_the_two_calls(detector: LanguageDetector, texts: list[str]) -> None:
    reading = read_texts(detector, texts)
    assert reading.languages == detector.detect_batch(texts) == [detector.detect(t) for t in texts]
    assert reading.fingerprints == fingerprints(texts)
    assert fingerprints_of_normals([normal_form(t) for t in texts]) == reading.fingerprints


def test_remembered_answers_stay_right_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(language, "MEMO", 2)
    detector = LanguageDetector()
    texts = ["Merci beaucoup pour tout", "Vielen Dank für alles", "Thank you so much"] * 3
    assert detector.detect_batch(texts) == ["fr", "de", "en"] * 3
    assert detector.detect_batch(["Vielen Dank für alles"]) == ["de"]


@pytest.mark.parametrize(
    "french",
    [
        "je suis vraiment très content de cette journée passée avec vous ",
        "merci beaucoup pour la livraison rapide je suis contente de ma commande ",  # ASCII
    ],
)
def test_a_long_post_is_read_from_its_start(detector: LanguageDetector, french: str) -> None:
    text = french * 150 + "and then it goes on in English for a very long while " * 100
    assert len(text) > 10 * language.MAX_CHARS
    assert detector.detect(text) == detector.detect_batch([text])[0] == "fr"
