"""A post's text as both language detection and duplicate detection read it, made once.

The normal form is the text after NFKC (only when it is not ASCII: ASCII is already
normal), without the retweet and quote markers ("RT @user:", "QT @user") and the mention
they introduce, links (a bare "http" too: a truncated link) and @mentions, lowercased, its
words (runs of letters, digits, '_' and combining marks) joined by single spaces:
punctuation, emoji, '#' and whitespace variation are gone. It is UTF-8 bytes, because the
duplicate fingerprints hash bytes. Duplicate detection compares it case-folded (`folded`:
"STRASSE" is "straße"); the language model reads it lowercased, because "ß" is evidence of
German that case folding would erase (UMSAB's German val fell from 90.4 to 89.8 %).

Both readers used to run their own regular expressions over the raw text, and those passes
cost more than anything else in either but the fastText call. Here the markup pattern starts
each alternative with a literal character, so `re` scans for those five characters in C
instead of trying every alternative at every position; and an ASCII text (most posts) is
cut into words by one `bytes.translate` and `split` instead of a regex. Non-ASCII text takes
the regex path, which gives the same words (`\\w` of ASCII is `[A-Za-z0-9_]`).
"""

from __future__ import annotations

import re
import unicodedata

# Combining marks (Latin accents typed apart, Arabic harakat, the vowel signs of the Indic,
# Thai, Lao and Myanmar scripts) are not \w in Python, but they belong to their words.
MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670"
    "\u06d6-\u06ed\u0900-\u0dff\u0e00-\u0eff\u1000-\u109f\u200c"
)
# "RT"/"QT" as a word (the lookbehind after the letter: not the end of a longer word) with
# the mention it introduces, links, a bare "http(s)" and mentions. Each alternative opens
# with a literal, so the search skips ahead to the next R, Q, h, w or @ in C.
_MARKUP = re.compile(
    r"R(?<!\wR)T\b:?(?:\s*@\w+:?)?|Q(?<!\wQ)T\b:?(?:\s*@\w+:?)?"
    r"|https?://\S*|https?\b|www\.\S+|@\w+"
)
_WORD = re.compile(r"[\w" + MARKS + r"]+")
# ASCII bytes: letters lowercased, digits and '_' kept, everything else a space.
_ASCII_WORDS = bytes(
    (ord(chr(c).lower()) if chr(c).isalnum() or c == 0x5F else 0x20) if c < 0x80 else c
    for c in range(256)
)
# A normal form's digits and underscores as spaces: what the language model reads.
ASCII_LETTERS = bytes(0x20 if chr(c).isdigit() or c == 0x5F else c for c in range(256))
_NOT_LETTERS = re.compile(r"[\d_]+")


def normal_form(text: str) -> bytes:
    """The text as both detectors compare and read it (see the module's docstring)."""
    if text.isascii():
        stripped = _MARKUP.sub(" ", text) if _has_markup(text) else text
        return b" ".join(stripped.encode().translate(_ASCII_WORDS).split())
    text = _MARKUP.sub(" ", unicodedata.normalize("NFKC", text))
    return " ".join(_WORD.findall(text.lower())).encode()


def folded(normal: bytes) -> bytes:
    """A normal form case-folded, as duplicates are compared. Folding lowercased text equals
    folding the original, and keeps letters letters (checked over every code point)."""
    return normal if normal.isascii() else normal.decode().casefold().encode()


def _has_markup(text: str) -> bool:
    """Whether the markup pattern could match: `in` is cheaper than a search that finds none."""
    return "@" in text or "http" in text or "www." in text or "T" in text


def language_text(normal: bytes) -> str:
    """A normal form as the language model reads it: digits and '_' become spaces (they carry
    no language, and a word's digits would pull its character n-grams towards noise)."""
    if normal.isascii():
        return normal.translate(ASCII_LETTERS).decode()
    return _NOT_LETTERS.sub(" ", normal.decode())
