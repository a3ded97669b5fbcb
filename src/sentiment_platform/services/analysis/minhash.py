"""MinHash for a batch of posts in a few numpy passes: word hashes, then LSH band buckets.

Every process must derive the same keys from the same words, since workers share the
duplicate index: word hashes are a fixed polynomial over the word's UTF-8 bytes (not
Python's per-process `hash`), and the permutations come from a fixed BLAKE2 derivation (not
a seeded RNG whose stream could change between numpy versions). Everything is integer
arithmetic, exact on every platform.

Per batch rather than per post or per word, because Python's cost is per call: CRC-32 a word
through `zlib`, a set a post and `np.unique` cost 5 CPU-µs a post together; the prefix sum,
one sort and one product matrix cost well under one (`benchmarks/dedup.py`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

BANDS = 12
ROWS = 7
PERMUTATIONS = BANDS * ROWS


def _derived(label: str, count: int) -> npt.NDArray[np.uint32]:
    digest = b"".join(
        hashlib.blake2b(f"{label}:{i}".encode(), digest_size=4).digest() for i in range(count)
    )
    return np.frombuffer(digest, dtype="<u4").astype(np.uint32)


# The permutations x -> a*x + b (mod 2**32), a odd: a bijection of the 32-bit hashes.
_A = (_derived("dedup-a", PERMUTATIONS) | np.uint32(1))[:, None]
_B = _derived("dedup-b", PERMUTATIONS)[:, None]
_BAND_SEEDS = _derived("dedup-band", BANDS).astype(np.uint64)[None, :]


# Word hashes: a polynomial over the word's bytes mod 2**64, for every word of a batch at once
# from one prefix sum (a word's sum, divided by its start's power, no longer depends on where
# it starts), then SplitMix64's finaliser, whose top 32 bits are the hash.
BASE = 0x9E3779B97F4A7C15  # odd: invertible mod 2**64
LENGTH_MIX = 0xD6E8FEB86659FD93  # the word's length, times this, is added before the mix
_POWERS = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))  # BASE**i, BASE**-i
CHUNK_WORDS = 1 << 14  # words per MinHash product matrix: 5.5 MB, not the batch's all


def _powers(n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    global _POWERS
    up, down = _POWERS
    if len(up) < n:  # grown rarely, replaced whole: safe for threads that still read the old
        size = max(n, 2 * len(up), 1 << 16)
        up, down = np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.uint64)
        up[0], up[1:] = 1, BASE
        down[0], down[1:] = 1, pow(BASE, -1, 1 << 64)
        _POWERS = (np.cumprod(up, dtype=np.uint64), np.cumprod(down, dtype=np.uint64))
        up, down = _POWERS
    return up, down


def word_hashes(blob: bytes) -> npt.NDArray[np.uint32]:
    """The 32-bit hash of every word of `blob` (words split by single spaces or newlines)."""
    data = np.frombuffer(blob, dtype=np.uint8)
    up, down = _powers(data.size)
    prefix = np.zeros(data.size + 1, dtype=np.uint64)
    np.cumsum(data * up[: data.size], out=prefix[1:])
    gaps = np.flatnonzero(data <= 0x20)
    starts = np.concatenate(([0], gaps + 1))
    ends = np.concatenate((gaps, [data.size]))
    value = (prefix[ends] - prefix[starts]) * down[starts]
    value += (ends - starts).astype(np.uint64) * np.uint64(LENGTH_MIX)
    value ^= value >> np.uint64(30)
    value *= np.uint64(0xBF58476D1CE4E5B9)
    value ^= value >> np.uint64(27)
    value *= np.uint64(0x94D049BB133111EB)
    value ^= value >> np.uint64(31)
    return (value >> np.uint64(32)).astype(np.uint32)


def _minima(flat: npt.NDArray[np.uint32], starts: npt.NDArray[np.intp]) -> npt.NDArray[np.uint32]:
    """Each post's PERMUTATIONS minhashes (PERMUTATIONS x posts), a post per start."""
    out = np.empty((PERMUTATIONS, len(starts)), dtype=np.uint32)
    ends = np.append(starts[1:], flat.size)
    first = 0
    while first < len(starts):  # chunks of whole posts, each matrix at most CHUNK_WORDS wide
        last = int(np.searchsorted(ends, starts[first] + CHUNK_WORDS, side="right"))
        last = max(last, first + 1)
        low, high = starts[first], ends[last - 1]
        products = np.multiply(_A, flat[None, low:high])  # in place from here: no temporaries
        products += _B
        np.minimum.reduceat(products, starts[first:last] - low, axis=1, out=out[:, first:last])
        first = last
    return out


def band_buckets(flat: npt.NDArray[np.uint32], starts: npt.NDArray[np.intp]) -> bytes:
    """Each post's BANDS bucket numbers from its slice of `flat`, 8 bytes each, post by post."""
    rows = _minima(flat, starts).T.reshape(len(starts), BANDS, ROWS).astype(np.uint64)
    bucket = np.repeat(_BAND_SEEDS, len(starts), axis=0)
    for row in range(ROWS):  # a 64-bit mix of the band's rows and its index
        bucket ^= rows[:, :, row]
        bucket *= np.uint64(0xBF58476D1CE4E5B9)
        bucket ^= bucket >> np.uint64(31)
    return bucket.astype("<u8").tobytes()
