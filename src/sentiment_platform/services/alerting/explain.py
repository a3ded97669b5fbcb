"""Why an alert fired: the terms that most distinguish the window's negative posts from the
rule's posts of the previous 24 hours, and a few example posts.

Scored by the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn,
"Fightin' Words", 2008): each term's log-odds in the window against the background, both
smoothed toward the term's pooled frequency, divided by its standard error (a z-score), so
a rare term seen twice does not outrank a common one seen forty times. Counts are posts
containing the term (a post repeating a word counts once). URLs, @handles, numbers, one-letter
tokens and English stop words are dropped; a term needs `min_count` window posts.

Pure and bounded: at most `max_posts` of each side are read (the caller passes the newest).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

MAX_POSTS = 2_000  # per side: the cost of one explanation is bounded
PRIOR_STRENGTH = 500.0  # the Dirichlet prior's total pseudo-count (alpha_0)

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<!\w)@\w+")
_WORD = re.compile(r"[^\W\d_](?:[\w'’]*\w)?")

STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't
    do does doesn't doing don't down during each few for from further get got had hadn't
    has hasn't have haven't having he he'd he'll he's her here here's hers herself him
    himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself just
    let's me more most mustn't my myself no nor not now of off on once only or other ought
    our ours ourselves out over own rt same shan't she she'd she'll she's should shouldn't
    so some such than that that's the their theirs them themselves then there there's these
    they they'd they'll they're they've this those through to too under until up us very
    via was wasn't we we'd we'll we're we've were weren't what what's when when's where
    where's which while who who's whom why why's will with won't would wouldn't you you'd
    you'll you're you've your yours yourself yourselves im dont cant ive amp u ur
    """.split()  # noqa: SIM905  (a block of words reads better than 190 quoted strings)
)


def terms_of(text: str) -> set[str]:
    """The distinct terms of one post, as scored."""
    text = _HANDLE.sub(" ", _URL.sub(" ", text)).lower().replace("’", "'")
    return {word for word in _WORD.findall(text) if len(word) > 1 and word not in STOP_WORDS}


@dataclass(frozen=True, slots=True)
class Term:
    term: str
    count: int  # window negative posts containing it
    background_count: int  # background posts containing it
    score: float  # z-score of the log-odds ratio; higher: more typical of the window


@dataclass(frozen=True, slots=True)
class Explanation:
    terms: list[Term]
    examples: list[str]  # post ids
    window_posts: int
    background_posts: int

    def as_details(self) -> dict[str, Any]:
        """What goes into the alert's `details` (JSON)."""
        return {
            "terms": [asdict(term) for term in self.terms],
            "examples": list(self.examples),
            "explained_posts": self.window_posts,
            "background_posts": self.background_posts,
        }


def _document_counts(texts: Sequence[set[str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for terms in texts:
        counts.update(terms)
    return counts


def explain(
    window: Sequence[tuple[str, str]],
    background: Sequence[tuple[str, str]],
    *,
    top: int = 10,
    min_count: int = 3,
    max_examples: int = 5,
    max_posts: int = MAX_POSTS,
) -> Explanation:
    """`window`: (post_id, text) of the window's negative posts, newest first; `background`:
    the rule's posts of the previous 24 hours. The `top` terms, best first, and up to
    `max_examples` post ids of the window that carry the most of them."""
    window = window[:max_posts]
    background = background[:max_posts]
    window_terms = [terms_of(text) for _, text in window]
    ours = _document_counts(window_terms)
    theirs = _document_counts([terms_of(text) for _, text in background])
    n_ours, n_theirs = sum(ours.values()), sum(theirs.values())
    pooled = n_ours + n_theirs
    scored: list[Term] = []
    for term, count in ours.items():
        if count < min_count:
            continue
        other = theirs.get(term, 0)
        alpha = PRIOR_STRENGTH * (count + other) / pooled
        log_odds_ours = math.log((count + alpha) / _rest(n_ours, count, alpha))
        log_odds_theirs = math.log((other + alpha) / _rest(n_theirs, other, alpha))
        variance = 1.0 / (count + alpha) + 1.0 / (other + alpha)
        score = (log_odds_ours - log_odds_theirs) / math.sqrt(variance)
        if score > -1e-9:  # over-represented in the window, or no background to tell
            scored.append(Term(term, count, other, round(score, 3)))
    scored.sort(key=lambda t: (-t.score, -t.count, t.term))
    best = scored[:top]
    return Explanation(
        terms=best,
        examples=_examples(window, window_terms, best, max_examples),
        window_posts=len(window),
        background_posts=len(background),
    )


def _rest(total: int, count: int, alpha: float) -> float:
    """The smoothed count of every other term (never 0: one lone term has nothing else)."""
    return max(total + PRIOR_STRENGTH - count - alpha, 1e-9)


def _examples(
    window: Sequence[tuple[str, str]],
    window_terms: Sequence[set[str]],
    best: Sequence[Term],
    limit: int,
) -> list[str]:
    """The window posts that carry the most of the best terms (earlier terms weigh more),
    newest first among equals."""
    weights = {term.term: len(best) - rank for rank, term in enumerate(best)}
    ranked = sorted(
        range(len(window)),
        key=lambda i: (-sum(weights.get(t, 0) for t in window_terms[i]), i),
    )
    return [window[i][0] for i in ranked[:limit]]
