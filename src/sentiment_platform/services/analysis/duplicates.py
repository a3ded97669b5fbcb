"""Near-duplicate detection: which earlier post, if any, a post is a copy of.

Retweets, syndicated copies and bot floods would otherwise be counted once per copy, and one
viral complaint copied thousands of times would move a share as much as thousands of people.
A post is a copy when its normalised text (`normalise`) equals an earlier post's, or when the
Jaccard similarity of the two texts' word sets is at least `THRESHOLD`. Words are 1-shingles
on purpose: a one-word edit of a typical tweet keeps its word-set Jaccard above 0.8, while
over word pairs or triples it falls well below, so longer shingles would miss the edits.

Candidates are found with MinHash LSH (`BANDS` bands of `ROWS` rows) and then checked
exactly against the stored words of the candidate group's first post, so LSH only decides
what is looked at, never what is marked. The MinHash is a small numpy one computed for a
whole batch at once (one matrix per batch rather than an object per post): datasketch 2.0.0
computes the same signatures, but one post at a time through SHA-1 and Python objects, which
is far slower, and its LSH keeps no expiry and no first-writer claim, both of which this
needs. ROWS is high enough that an unrelated post rarely holds a band bucket first (each
bucket keeps one group, so such "pollution" would hide a real copy), BANDS as few as still
find a one-word edit; `benchmarks/dedup.py` measures both.

Very short texts are treated apart, because identical short texts are mostly coincidences
("thank you", "happy cake day"), not copies: under `MIN_WORDS` words a post is never marked,
and under `MIN_NEAR_WORDS` distinct words only an exact match counts (below that, the near
matches on real tweets were as often two people saying the same short thing as one copy).

Every process must derive the same keys from the same text, since workers share the state:
word hashes are CRC-32 (not Python's per-process `hash`), and the permutations come from a
fixed BLAKE2 derivation (not a seeded RNG whose stream could change between numpy versions).

`DuplicateIndex` is what the worker holds: `LocalDuplicateIndex` here, for the embedded
default's one process, and `RedisDuplicateIndex` (`duplicates_redis.py`), whose state every
worker shares. Both follow one rule: the first post to claim a bucket is its group's first.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Protocol

import numpy as np
import numpy.typing as npt

THRESHOLD = Fraction(4, 5)  # Jaccard over word sets, compared exactly in integers
MIN_WORDS = 5  # fewer words after normalisation: never marked
MIN_NEAR_WORDS = 9  # fewer distinct words: an exact match only
BANDS = 12
ROWS = 7
PERMUTATIONS = BANDS * ROWS
KEY_VERSION = "v1"  # part of every shared key: a change of the fingerprint changes it

PostText = tuple[str, str, datetime]  # (post_id, text, when the post was made)


class DuplicateIndex(Protocol):
    """Marks copies: for each post in order, the first post of its group, or None."""

    async def assign(self, posts: Sequence[PostText]) -> list[str | None]:
        """For each post, in order, the post_id of the first post of its group seen within
        the window (posts earlier in the same batch included), or None when it has none or
        is itself the first. Calling it again with the same posts gives the same answer, so
        a batch delivered twice is marked the same way twice."""
        ...


# Combining marks (accents typed apart, Arabic harakat, Indic vowel signs) are not \w in
# Python but belong to their words; the same ranges as language.py's.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670"
    "\u06d6-\u06ed\u0900-\u0dff\u0e00-\u0eff\u1000-\u109f\u200c"
)
# The retweet and quote markers ("RT @user:", "QT @user") with the mention they introduce,
# anywhere (a retweet's text can start with a quote mark); then links and mentions.
_MARKUP = re.compile(r"\b[RQ]T\b:?(?:\s*@\w+:?)?|https?://\S*|www\.\S+|@\w+")
# A word: letters, digits and marks. Punctuation runs, emoji (and their skin-tone and
# variation selectors), '#' and whitespace all fall between words.
_WORD = re.compile(r"[\w" + _MARKS + r"]+")


def normalise(text: str) -> str:
    """The text as compared: NFKC, no retweet marker, mentions or links, case-folded, its
    words joined by single spaces (punctuation, emoji and whitespace variation gone)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(_WORD.findall(_MARKUP.sub(" ", text).casefold()))


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the index stores and looks up for one post.

    `exact` is empty when the text is too short to be marked. `words` (the distinct words'
    32-bit hashes, little-endian) and `bands` (the LSH bucket of each band) are empty when
    only an exact match counts.
    """

    exact: bytes
    words: bytes
    bands: tuple[int, ...]


def _derived(label: str, count: int) -> npt.NDArray[np.uint32]:
    digest = b"".join(
        hashlib.blake2b(f"{label}:{i}".encode(), digest_size=4).digest() for i in range(count)
    )
    return np.frombuffer(digest, dtype="<u4").astype(np.uint32)


# The permutations x -> a*x + b (mod 2**32), a odd: a bijection of the 32-bit hashes.
_A = (_derived("dedup-a", PERMUTATIONS) | np.uint32(1))[:, None]
_B = _derived("dedup-b", PERMUTATIONS)[:, None]
_BAND_SEEDS = _derived("dedup-band", BANDS).astype(np.uint64)[None, :]


def _mix32(values: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """MurmurHash3's finaliser: CRC-32 is linear over bits, this spreads them."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values ^= values >> np.uint32(13)
    values *= np.uint32(0xC2B2AE35)
    values ^= values >> np.uint32(16)
    return values


def _bands(flat: npt.NDArray[np.uint32], starts: npt.NDArray[np.intp]) -> list[list[int]]:
    """Each post's BANDS bucket numbers from its slice of `flat` (a post per start)."""
    # Permutation-major (PERMUTATIONS x words): one product matrix for the whole batch.
    minima = np.minimum.reduceat(_A * flat[None, :] + _B, starts, axis=1)
    rows = minima.T.reshape(len(starts), BANDS, ROWS).astype(np.uint64)
    bucket = np.repeat(_BAND_SEEDS, len(starts), axis=0)
    for row in range(ROWS):  # a 64-bit mix of the band's rows and its index
        bucket ^= rows[:, :, row]
        bucket *= np.uint64(0xBF58476D1CE4E5B9)
        bucket ^= bucket >> np.uint64(31)
    return bucket.tolist()  # type: ignore[no-any-return]


def fingerprints(texts: Sequence[str]) -> list[Fingerprint]:
    """Fingerprints of a batch of texts, in order; the MinHash work is one numpy pass."""
    exact: list[bytes] = []
    word_sets: list[set[int]] = []
    for text in texts:
        normal = normalise(text)
        tokens = normal.split(" ")
        if len(tokens) < MIN_WORDS:  # "" splits into [""]: too short as well
            exact.append(b"")
            word_sets.append(set())
            continue
        encoded = normal.encode()
        exact.append(hashlib.blake2b(encoded, digest_size=16).digest())
        hashed = set(map(zlib.crc32, encoded.split(b" ")))
        word_sets.append(hashed if len(hashed) >= MIN_NEAR_WORDS else set())
    near = [i for i, hashed in enumerate(word_sets) if hashed]
    result = [Fingerprint(key, b"", ()) for key in exact]
    if not near:
        return result
    lengths = np.fromiter((len(word_sets[i]) for i in near), dtype=np.intp, count=len(near))
    flat = _mix32(
        np.fromiter(
            (h for i in near for h in word_sets[i]), dtype=np.uint32, count=int(lengths.sum())
        )
    )
    starts = np.zeros(len(near), dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    packed = flat.astype("<u4").tobytes()
    for i, start, length, buckets in zip(near, starts, lengths, _bands(flat, starts), strict=True):
        words = packed[4 * start : 4 * (start + length)]
        result[i] = Fingerprint(exact[i], words, tuple(buckets))
    return result


def word_set(words: bytes) -> set[bytes]:
    """The 4-byte word hashes of `Fingerprint.words`, as a set."""
    return {words[i : i + 4] for i in range(0, len(words), 4)}


def similar(words: bytes, other: bytes) -> bool:
    """Whether two `Fingerprint.words` are at least THRESHOLD alike (Jaccard, exactly)."""
    if not words or not other:
        return False
    mine = word_set(words)
    shared = len(mine & word_set(other))
    union = len(mine) + len(other) // 4 - shared
    return shared * THRESHOLD.denominator >= THRESHOLD.numerator * union


@dataclass(slots=True)
class _Group:
    at: float  # the first post's time, seconds since the epoch
    words: bytes
    keys: list[bytes | int]  # every bucket naming this group, dropped with it


class LocalDuplicateIndex:
    """The index in this process's memory: for the embedded default, where one process runs
    the only worker. Not shared and not persisted: a restart forgets the window.

    Time is the posts' own `at` (pass the time the worker received them): a group lives
    until a post `window` later than its first arrives, and then its buckets are dropped,
    so memory holds only the groups of the last window.
    """

    def __init__(self, window: timedelta) -> None:
        self.window = window.total_seconds()
        self._buckets: dict[bytes | int, str] = {}
        self._groups: dict[str, _Group] = {}
        self._order: deque[tuple[float, str]] = deque()  # (at, first), in arrival order
        self._clock = float("-inf")

    def __len__(self) -> int:
        """Groups held (every unique post of the window is one)."""
        return len(self._groups)

    async def assign(self, posts: Sequence[PostText]) -> list[str | None]:
        return self.assign_now(posts)

    def assign_now(self, posts: Sequence[PostText]) -> list[str | None]:
        """`assign` without the coroutine, for callers that are not async."""
        found = fingerprints([text for _, text, _ in posts])
        marks: list[str | None] = []
        for (post_id, _, at), fingerprint in zip(posts, found, strict=True):
            moment = at.timestamp()
            if moment > self._clock:
                self._clock = moment
                self._expire()
            marks.append(self._place(post_id, moment, fingerprint) if fingerprint.exact else None)
        return marks

    def _live(self, key: bytes | int, moment: float) -> str | None:
        first = self._buckets.get(key)
        if first is None:
            return None
        group = self._groups.get(first)
        return first if group is not None and moment - group.at < self.window else None

    def _place(self, post_id: str, moment: float, fingerprint: Fingerprint) -> str | None:
        first = self._live(fingerprint.exact, moment)
        if first is not None:  # an exact copy: its buckets are its first's already
            return None if first == post_id else first
        for band in fingerprint.bands:
            candidate = self._live(band, moment)
            if candidate is not None and similar(fingerprint.words, self._groups[candidate].words):
                first = candidate
                break
        if first is None:
            first = post_id
            self._drop(post_id)  # an expired group of the same post, seen again
            self._groups[post_id] = _Group(moment, fingerprint.words, [])
            self._order.append((moment, post_id))
        group = self._groups[first]
        keys: tuple[bytes | int, ...] = (fingerprint.exact, *fingerprint.bands)
        for key in keys:
            if self._live(key, moment) is None:
                self._buckets[key] = first
                group.keys.append(key)
        return None if first == post_id else first

    def _expire(self) -> None:
        horizon = self._clock - self.window
        while self._order and self._order[0][0] <= horizon:
            at, first = self._order.popleft()
            group = self._groups.get(first)
            if group is not None and group.at == at:
                self._drop(first)

    def _drop(self, first: str) -> None:
        group = self._groups.pop(first, None)
        if group is not None:
            for key in group.keys:
                if self._buckets.get(key) == first:
                    del self._buckets[key]
