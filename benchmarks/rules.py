"""Alert rules' matcher and explanation: how much 100 rules cost a worker's batch.

Builds 100 rules of 1–5 keywords (a fifth of them phrases, a tenth with a source filter,
two with no keywords) and matches a batch of 500 posts (WORKER_BATCH_SIZE) of real tweet
lengths, with the one compiled matcher and, for comparison, one regex per rule. Prints the
best of `--repeat` runs as µs per post and posts/s, the build time, and one explanation
over 2,000 + 2,000 posts. Texts: the TweetEval validation tweets from ../shared/data when
present, else generated ones.

    .venv/bin/python benchmarks/rules.py [--rules 100] [--posts 500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

from sentiment_platform.services.alerting.explain import explain
from sentiment_platform.services.alerting.matcher import Matcher, RuleFilter

REPO = Path(__file__).resolve().parents[1]
VAL_TEXTS = REPO.parent / "shared" / "data" / "tweeteval" / "sentiment" / "val_text.txt"
SOURCES = ("twitter", "reddit", "web")


def texts(count: int, rng: random.Random) -> list[str]:
    if VAL_TEXTS.exists():
        lines = [line.strip() for line in VAL_TEXTS.read_text().splitlines() if line.strip()]
    else:
        words = [
            "delay",
            "refund",
            "great",
            "awful",
            "service",
            "phone",
            "camera",
            "flight",
            "late",
            "order",
            "app",
        ]
        lines = [" ".join(rng.choices(words, k=rng.randint(8, 30))) for _ in range(2000)]
    return [rng.choice(lines) for _ in range(count)]


def make_rules(count: int, corpus: list[str], rng: random.Random) -> list[RuleFilter]:
    vocabulary = sorted({w for text in corpus for w in re.findall(r"[a-z]{4,}", text.lower())})
    rules = []
    for rule_id in range(1, count + 1):
        if rule_id <= 2:
            rules.append(RuleFilter(rule_id, ()))
            continue
        keywords = []
        for _ in range(rng.randint(1, 5)):
            words = rng.sample(vocabulary, 2 if rng.random() < 0.2 else 1)
            keywords.append(" ".join(words))
        source = rng.choice(SOURCES) if rng.random() < 0.1 else None
        rules.append(RuleFilter(rule_id, tuple(keywords), source))
    return rules


def per_rule_regex(rules: list[RuleFilter]) -> Callable[[str, str], set[int]]:
    compiled = [
        (
            rule.rule_id,
            rule.source,
            re.compile("|".join(rf"(?<!\w){re.escape(k)}(?!\w)" for k in rule.keywords), re.I)
            if rule.keywords
            else None,
        )
        for rule in rules
    ]

    def match(text: str, source: str) -> set[int]:
        return {
            rule_id
            for rule_id, only, pattern in compiled
            if only in (None, source) and (pattern is None or pattern.search(text))
        }

    return match


def best_of(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(14)
    batch = [(text, rng.choice(SOURCES)) for text in texts(args.posts, rng)]
    rules = make_rules(args.rules, [text for text, _ in batch], rng)
    keywords = sum(len(rule.keywords) for rule in rules)

    start = time.perf_counter()
    matcher = Matcher.build(rules)
    build_ms = (time.perf_counter() - start) * 1000
    one = best_of(args.repeat, lambda: matcher.match_many(batch))
    baseline = per_rule_regex(rules)
    naive = best_of(args.repeat, lambda: [baseline(text, source) for text, source in batch])
    hits = sum(len(found) for found in matcher.match_many(batch))
    assert [set(f) for f in matcher.match_many(batch)] == [baseline(t, s) for t, s in batch]

    print(f"rules: {len(rules)} ({keywords} keywords), posts per batch: {len(batch)}")
    print(f"matcher build: {build_ms:.2f} ms; rule matches in the batch: {hits}")
    for name, seconds in (("compiled matcher", one), ("one regex per rule", naive)):
        print(
            f"{name:>20}: {seconds * 1000:7.2f} ms per batch, "
            f"{seconds / len(batch) * 1e6:6.1f} µs per post, {len(batch) / seconds:9,.0f} posts/s"
        )

    window = [(f"w{i}", text) for i, text in enumerate(texts(2000, rng))]
    background = [(f"b{i}", text) for i, text in enumerate(texts(2000, rng))]
    seconds = best_of(3, lambda: explain(window, background))
    print(f"explanation over 2,000 + 2,000 posts: {seconds * 1000:.1f} ms")


if __name__ == "__main__":
    main()
