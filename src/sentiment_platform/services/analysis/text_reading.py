"""Language and duplicate fingerprints of a batch of posts, from one normalisation pass.

Language detection and duplicate detection read the same normal form of a post
(`normal_text.normal_form`); a worker that needs both makes it once here instead of once in
`LanguageDetector.detect_batch` and again in `fingerprints`. The answers equal those two
calls' (the unit tests hold them to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sentiment_platform.services.analysis.duplicates import Fingerprint, fingerprints_of_normals
from sentiment_platform.services.analysis.language import LanguageDetector
from sentiment_platform.services.analysis.normal_text import normal_form


@dataclass(frozen=True, slots=True)
class TextReading:
    """A batch's languages and fingerprints, each in the posts' order."""

    languages: list[str]
    fingerprints: list[Fingerprint]


def read_texts(detector: LanguageDetector, texts: Sequence[str]) -> TextReading:
    """`detector.detect_batch(texts)` and `fingerprints(texts)`, normalising each text once.

    Pass `fingerprints` on to `DuplicateIndex.assign(posts, found=...)`.
    """
    normals = [normal_form(text) for text in texts]
    return TextReading(detector.detect_normals(normals), fingerprints_of_normals(normals))
