"""Near-duplicate detection in one process: what normalisation strips, what counts as a copy,
the short-text rules, the window, and the issue's acceptance (200 tweets, their retweets and
one-word edits, 1,000 unrelated tweets) on real tweets."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from sentiment_platform.services.analysis.duplicates import (
    MIN_NEAR_WORDS,
    MIN_WORDS,
    LocalDuplicateIndex,
    fingerprints,
    normalise,
)
from tests.support.duplicate_corpus import build, load_tweets

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
TEXT = "The new update broke my phone again and support still has not answered my ticket"


def _index(hours: float = 24) -> LocalDuplicateIndex:
    return LocalDuplicateIndex(timedelta(hours=hours))


@pytest.mark.parametrize(
    "variant",
    [
        "RT @someone: " + TEXT,
        "RT @a: RT @b: " + TEXT,
        '"RT @user: ' + TEXT + '"',
        "@brand @support " + TEXT,
        TEXT + " https://t.co/AbC123 www.example.com/x",
        TEXT.upper(),
        "  " + TEXT.replace(" ", "   \n\t") + "  ",
        TEXT + " 😡😡😡",
        TEXT + " 👍🏽",  # a skin-tone modifier
        TEXT.replace("again", "again!!!") + " ...",
        "Ｔｈｅ" + TEXT[3:],  # full-width letters, NFKC
        "#" + TEXT.replace("update", "#update"),
    ],
)
def test_a_variant_normalises_to_the_same_text(variant: str) -> None:
    assert normalise(variant) == normalise(TEXT)


def test_normalise_keeps_words_digits_and_accents() -> None:
    assert normalise("Café à 3€ — c'est l'été!") == "café à 3 c est l été"
    assert normalise("") == ""
    assert normalise("😂😂 @user http://t.co/x") == ""


def test_fingerprints_are_the_same_in_every_process() -> None:
    """Workers share buckets, so the keys cannot depend on a process's hash seed."""
    code = (
        "from sentiment_platform.services.analysis.duplicates import fingerprints\n"
        f"print(repr(fingerprints([{TEXT!r}])[0]))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert seen == {repr(fingerprints([TEXT])[0])}
    short = fingerprints(["thank you so much everyone"])[0]
    assert short.exact and not short.words and not short.bands


async def test_copies_point_to_the_first_post_of_their_group() -> None:
    index = _index()
    edit = TEXT.replace("phone", "laptop")
    posts = [
        ("a", TEXT, T0),
        ("b", "RT @x: " + TEXT, T0),
        ("c", edit, T0),
        ("d", "RT @y: " + edit, T0),  # an exact copy of a near copy: still a's group
        ("e", "Lovely weather at the beach today, the kids built a huge sandcastle", T0),
    ]
    assert await index.assign(posts) == [None, "a", "a", "a", None]
    assert len(index) == 2


async def test_a_batch_delivered_twice_is_marked_the_same_way() -> None:
    index = _index()
    posts = [("a", TEXT, T0), ("b", TEXT + " #fail", T0), ("c", "RT @x: " + TEXT, T0)]
    first = await index.assign(posts)
    assert await index.assign(posts) == first == [None, "a", "a"]


async def test_short_texts_are_never_marked() -> None:
    index = _index()
    text = "thank you so much"
    assert len(text.split()) < MIN_WORDS
    assert await index.assign([("a", text, T0), ("b", text, T0), ("c", "😂😂", T0)]) == [
        None,
        None,
        None,
    ]
    assert len(index) == 0


async def test_below_the_near_length_only_an_exact_copy_counts() -> None:
    index = _index()
    text = "can not wait to see the lakers tomorrow"  # 8 distinct words
    assert len(set(text.split())) < MIN_NEAR_WORDS
    marks = await index.assign(
        [("a", text, T0), ("b", "RT @x: " + text + "!!", T0), ("c", "i " + text, T0)]
    )
    assert marks == [None, "a", None]


async def test_a_one_word_edit_of_a_long_text_is_near_and_an_unrelated_one_is_not() -> None:
    index = _index()
    marks = await index.assign(
        [
            ("a", TEXT, T0),
            ("b", TEXT.replace("support", "customer service"), T0),  # Jaccard 15/17
            ("c", "My phone broke again after the update and nobody answers", T0),
        ]
    )
    assert marks == [None, "a", None]


async def test_a_group_expires_after_the_window_and_memory_with_it() -> None:
    index = _index(hours=1)
    assert await index.assign([("a", TEXT, T0)]) == [None]
    later = T0 + timedelta(minutes=59)
    assert await index.assign([("b", "RT @x: " + TEXT, later)]) == ["a"]
    after = T0 + timedelta(hours=1, minutes=1)
    assert await index.assign([("c", "RT @y: " + TEXT, after)]) == [None]  # a new group
    assert await index.assign([("d", TEXT, after)]) == ["c"]
    assert len(index) == 1
    assert await index.assign([("e", "something else entirely", after + timedelta(hours=2))])
    assert len(index) == 0 and not index._buckets


async def test_memory_holds_only_the_window() -> None:
    index = _index(hours=1)
    for minute in range(300):
        moment = T0 + timedelta(minutes=minute)
        text = f"post number {minute} about a topic that differs {minute * 7919} each time"
        await index.assign([(f"p{minute}", text, moment)])
    assert len(index) == 60


@pytest.fixture(scope="module")
def tweets() -> list[str]:
    found = load_tweets()
    if found is None:
        pytest.skip("../shared/data/tweeteval is not beside the repository")
    return found


async def test_the_issue_acceptance_on_real_tweets(tweets: list[str]) -> None:
    corpus = build(tweets)
    index = _index()
    marks: dict[str, str | None] = {}
    for start in range(0, len(corpus.posts), 500):  # the worker's batches
        batch = [(post_id, text, T0) for post_id, text in corpus.posts[start : start + 500]]
        for (post_id, _, _), mark in zip(batch, await index.assign(batch), strict=True):
            marks[post_id] = mark
    hits = sum(marks[copy] == original for copy, original in corpus.original_of.items())
    assert hits >= 0.95 * len(corpus.original_of), hits
    assert {marks[copy] for copy in corpus.original_of} <= corpus.originals | {None}
    assert [post for post in corpus.unrelated if marks[post] is not None] == []
    assert [post for post in corpus.originals if marks[post] is not None] == []
