"""Near-duplicate detection: which earlier post, if any, a post is a copy of.

Retweets, syndicated copies and bot floods would otherwise be counted once per copy, and one
viral complaint copied thousands of times would move a share as much as thousands of people.
A post is a copy when its normalised text (`normalise`) equals an earlier post's, or when the
Jaccard similarity of the two texts' word sets is at least `THRESHOLD`. Words are 1-shingles
on purpose: a one-word edit of a typical tweet keeps its word-set Jaccard above 0.8, while
over word pairs or triples it falls well below, so longer shingles would miss the edits.

Candidates are found with MinHash LSH (`minhash.BANDS` bands of `minhash.ROWS` rows) and
then checked exactly against the stored words of the candidate group's first post, so LSH
only decides what is looked at, never what is marked. The MinHash is numpy's, computed for a
whole batch at once (`minhash.py`): datasketch 2.0.0 computes the same signatures, but one
post at a time through SHA-1 and Python objects, which is far slower, and its LSH keeps no
expiry and no first-writer claim, both of which this needs. ROWS is high enough that an
unrelated post rarely holds a band bucket first (each bucket keeps one group, so such
"pollution" would hide a real copy), BANDS as few as still find a one-word edit;
`benchmarks/dedup.py` measures both.

Very short texts are treated apart, because identical short texts are mostly coincidences
("thank you", "happy cake day"), not copies: under `MIN_WORDS` words a post is never marked,
and under `MIN_NEAR_WORDS` distinct words only an exact match counts (below that, the near
matches on real tweets were as often two people saying the same short thing as one copy).

Every process must derive the same keys from the same text, since workers share the state:
word hashes are fixed polynomials (not Python's per-process `hash`), and the permutations
come from a fixed BLAKE2 derivation (not a seeded RNG whose stream could change between numpy
versions); `minhash.py` computes both, for a whole batch in a few numpy passes.

`DuplicateIndex` is what the worker holds: `LocalDuplicateIndex` here, for the embedded
default's one process, and `RedisDuplicateIndex` (`duplicates_redis.py`), whose state every
worker shares. Both follow one rule: the first post to claim a bucket is its group's first.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import NamedTuple, Protocol

import numpy as np

from sentiment_platform.services.analysis.minhash import BANDS, band_buckets, word_hashes
from sentiment_platform.services.analysis.normal_text import folded, normal_form

THRESHOLD = Fraction(4, 5)  # Jaccard over word sets, compared exactly in integers
MIN_WORDS = 5  # fewer words after normalisation: never marked
MIN_NEAR_WORDS = 9  # fewer distinct words: an exact match only
KEY_VERSION = "v4"  # part of every shared key: a change of the fingerprint or layout changes it

PostText = tuple[str, str, datetime]  # (post_id, text, when the post was made)


class DuplicateIndex(Protocol):
    """Marks copies: for each post in order, the first post of its group, or None."""

    async def assign(
        self, posts: Sequence[PostText], found: Sequence[Fingerprint] | None = None
    ) -> list[str | None]:
        """For each post, in order, the post_id of the first post of its group seen within
        the window (posts earlier in the same batch included), or None when it has none or
        is itself the first. Calling it again with the same posts gives the same answer, so
        a batch delivered twice is marked the same way twice. `found`: the posts'
        fingerprints, when the caller has made them already (`fingerprints_of_normals`)."""
        ...


def normalise(text: str) -> str:
    """The text as compared: `normal_text.normal_form` case-folded (NFKC, no retweet marker,
    mentions or links, its words joined by single spaces)."""
    return folded(normal_form(text)).decode()


class Fingerprint(NamedTuple):
    """What the index stores and looks up for one post.

    `exact` is empty when the text is too short to be marked. `words` (the distinct words'
    32-bit hashes, little-endian, ascending) and `bands` (the LSH bucket of each band, 8
    bytes little-endian each, as Redis stores them) are empty when only an exact match counts.
    """

    exact: bytes
    words: bytes
    bands: bytes


def fingerprints(texts: Sequence[str]) -> list[Fingerprint]:
    """Fingerprints of a batch of texts, in order; the hashing and MinHash are numpy passes."""
    return fingerprints_of_normals([normal_form(text) for text in texts])


def fingerprints_of_normals(normals: Sequence[bytes]) -> list[Fingerprint]:
    """`fingerprints` of texts given as their `normal_text.normal_form` (made once by a caller
    that detects their language too)."""
    exact: list[bytes] = []
    long: list[bytes] = []  # the folded forms with MIN_NEAR_WORDS words or more
    at: list[int] = []  # their places in the batch
    counts: list[int] = []  # their words
    for normal in normals:
        words = normal.count(b" ") + 1 if normal else 0
        if words < MIN_WORDS:
            exact.append(b"")
            continue
        normal = folded(normal)
        exact.append(hashlib.blake2b(normal, digest_size=16).digest())
        if words >= MIN_NEAR_WORDS:
            long.append(normal)
            at.append(len(exact) - 1)
            counts.append(words)
    words_of, bands_of = [b""] * len(exact), [b""] * len(exact)
    if long:
        _near(long, at, counts, words_of, bands_of)
    return list(map(Fingerprint, exact, words_of, bands_of))


def _near(
    long: list[bytes],
    at: list[int],
    counts: list[int],
    words_of: list[bytes],
    bands_of: list[bytes],
) -> None:
    """Fills in the word hashes and bands of the posts with MIN_NEAR_WORDS distinct words."""
    post = np.repeat(np.arange(len(long), dtype=np.uint64), counts)
    keys = np.sort((post << np.uint64(32)) | word_hashes(b"\n".join(long)))
    first = np.empty(keys.size, dtype=bool)  # the first of each run of equal keys
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    keys = keys[first]  # each post's distinct word hashes, ascending
    owner = (keys >> np.uint64(32)).astype(np.intp)
    distinct = np.bincount(owner, minlength=len(long))
    near = distinct >= MIN_NEAR_WORDS
    if not near.any():
        return
    flat = keys[near[owner]].astype(np.uint32)
    lengths = distinct[near]
    starts = np.zeros(len(lengths), dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    packed, bands, width = flat.astype("<u4").tobytes(), band_buckets(flat, starts), 8 * BANDS
    ends = (starts + lengths).tolist()
    for k, (i, start, end) in enumerate(
        zip(np.flatnonzero(near).tolist(), starts.tolist(), ends, strict=True)
    ):
        words_of[at[i]] = packed[4 * start : 4 * end]
        bands_of[at[i]] = bands[width * k : width * (k + 1)]


_SHORT = Fingerprint(b"", b"", b"")
_BAND_KEYS = struct.Struct(f"<{BANDS}Q")  # the in-process index keys its buckets by int


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

    async def assign(
        self, posts: Sequence[PostText], found: Sequence[Fingerprint] | None = None
    ) -> list[str | None]:
        return self.assign_now(posts, found)

    def assign_now(
        self, posts: Sequence[PostText], found: Sequence[Fingerprint] | None = None
    ) -> list[str | None]:
        """`assign` without the coroutine, for callers that are not async."""
        if found is None:
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
        bands = _BAND_KEYS.unpack(fingerprint.bands) if fingerprint.bands else ()
        claims: list[bytes | int] = [fingerprint.exact]  # a copy claims its exact hash alone
        free: list[bytes | int] = []  # the bands no live group holds
        for band in bands:  # one look-up a bucket, as the Redis script does
            holder = self._live(band, moment)
            if holder is None:
                free.append(band)
            elif first is None and similar(fingerprint.words, self._groups[holder].words):
                first = holder
        if first is None:
            first = post_id
            claims += free
            if self._drop(post_id):  # a group of the same post, seen again: its buckets freed
                claims = [k for k in (fingerprint.exact, *bands) if self._live(k, moment) is None]
            self._groups[post_id] = _Group(moment, fingerprint.words, [])
            self._order.append((moment, post_id))
        group = self._groups[first]
        for key in claims:
            self._buckets[key] = first
        group.keys += claims
        return None if first == post_id else first

    def _expire(self) -> None:
        horizon = self._clock - self.window
        while self._order and self._order[0][0] <= horizon:
            at, first = self._order.popleft()
            group = self._groups.get(first)
            if group is not None and group.at == at:
                self._drop(first)

    def _drop(self, first: str) -> bool:
        """Forgets the group `first` began and its buckets; whether there was one."""
        group = self._groups.pop(first, None)
        if group is None:
            return False
        for key in group.keys:
            if self._buckets.get(key) == first:
                del self._buckets[key]
        return True
