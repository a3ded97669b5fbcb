"""The issue's duplicate set: 200 tweets, a retweet and a one-word edit of each, and 1,000
unrelated tweets, drawn with a fixed seed from TweetEval's sentiment train tweets.

The 1,200 drawn tweets are distinct and of a reasonable length (10 to 40 words once
normalised), and no two of them share half their words, so any mark among the unrelated
ones is a false mark rather than a copy TweetEval itself holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sentiment_platform.services.analysis.duplicates import normalise

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TWEETS = SHARED_DATA / "tweeteval" / "sentiment" / "train_text.txt"
GOEMOTIONS = SHARED_DATA / "goemotions_ekman"


@dataclass(frozen=True)
class Corpus:
    posts: list[tuple[str, str]]  # (post_id, text) in stream order
    original_of: dict[str, str]  # a copy's post_id -> its original's
    originals: set[str]
    unrelated: set[str]


def load_tweets() -> list[str] | None:
    """TweetEval's sentiment train tweets, or None when ../shared/data is not beside the repo."""
    if not TWEETS.exists():
        return None
    return TWEETS.read_text(encoding="utf-8").splitlines()


def _unrelated_sample(tweets: list[str], count: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    pool = []
    for tweet in tweets:
        normal = normalise(tweet)
        if 10 <= len(normal.split()) <= 40 and normal not in seen:
            seen.add(normal)
            pool.append(tweet)
    rng.shuffle(pool)
    chosen: list[str] = []
    chosen_words: list[set[str]] = []
    for tweet in pool:
        words = set(normalise(tweet).split())
        if all(2 * len(words & other) < len(words | other) for other in chosen_words):
            chosen.append(tweet)
            chosen_words.append(words)
            if len(chosen) == count:
                return chosen
    raise ValueError(f"only {len(chosen)} unrelated tweets of reasonable length")


def one_word_edit(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """The text with one of its plain words replaced by a word it does not contain."""
    tokens = text.split(" ")
    plain = [i for i, token in enumerate(tokens) if token.isalpha()]
    position = rng.choice(plain)
    present = set(normalise(text).split())
    tokens[position] = rng.choice([word for word in vocabulary if word not in present])
    return " ".join(tokens)


def build(tweets: list[str], seed: int = 31) -> Corpus:
    """Originals and unrelated tweets first (shuffled), then the copies and more unrelated
    tweets (shuffled): every copy comes after its original, some within the same batch."""
    rng = random.Random(seed)
    drawn = _unrelated_sample(tweets, 1_200, rng)
    originals = {f"o{i}": text for i, text in enumerate(drawn[:200])}
    unrelated = [(f"u{i}", text) for i, text in enumerate(drawn[200:])]
    vocabulary = sorted({word for text in drawn[:50] for word in normalise(text).split()})
    vocabulary = [word for word in vocabulary if word.isalpha() and len(word) > 3]
    copies: list[tuple[str, str]] = []
    original_of: dict[str, str] = {}
    for post_id, text in originals.items():
        copies.append((f"rt-{post_id}", "RT @someone: " + text))
        copies.append((f"ed-{post_id}", one_word_edit(text, rng, vocabulary)))
        original_of[f"rt-{post_id}"] = original_of[f"ed-{post_id}"] = post_id
    first = [*originals.items(), *unrelated[:500]]
    second = [*copies, *unrelated[500:]]
    rng.shuffle(first)
    rng.shuffle(second)
    return Corpus(
        posts=first + second,
        original_of=original_of,
        originals=set(originals),
        unrelated={post_id for post_id, _ in unrelated},
    )
