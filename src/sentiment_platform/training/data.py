"""Readers for the shared training data, and a writer for the `text,label` CSVs `evaluate` reads.

Besides the plain splits, it builds the shifted sentiment sets a model's class shares are
checked on: GoEmotions-Ekman (Reddit comments) mapped to sentiment, and TweetEval val
resampled to another share of negative tweets.

The data stays in shared/data; CSVs are written wherever the caller says (a temp dir), never
into the repository.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentiment_platform.domain import Emotion, Sentiment, Task, to_emotion
from sentiment_platform.training.configs import SentimentConfig

# TweetEval's mapping.txt: 0 negative, 1 neutral, 2 positive.
TWEETEVAL_SENTIMENT = (Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE)
# The order of the embedded model's outputs; the artifact's labels.json repeats it.
SENTIMENT_LABELS: tuple[str, ...] = tuple(s.value for s in TWEETEVAL_SENTIMENT)
EMOTION_LABELS: tuple[str, ...] = tuple(
    e.value
    for e in (
        Emotion.ANGER,
        Emotion.FEAR,
        Emotion.JOY,
        Emotion.NEUTRAL,
        Emotion.SADNESS,
        Emotion.SURPRISE,
    )
)
TASKS: tuple[Task, ...] = tuple(Task)
# An emotion's sentiment, for GoEmotions as a sentiment set (disgust is anger already);
# surprise can be either, so its rows are left out.
EMOTION_SENTIMENT: dict[Emotion, Sentiment] = {
    Emotion.JOY: Sentiment.POSITIVE,
    Emotion.ANGER: Sentiment.NEGATIVE,
    Emotion.SADNESS: Sentiment.NEGATIVE,
    Emotion.FEAR: Sentiment.NEGATIVE,
    Emotion.NEUTRAL: Sentiment.NEUTRAL,
}
# TweetEval emotion's mapping.txt: 0 anger, 1 joy, 2 optimism, 3 sadness (no neutral class).
TWEETEVAL_EMOTION_SENTIMENT = (
    Sentiment.NEGATIVE,
    Sentiment.POSITIVE,
    Sentiment.POSITIVE,
    Sentiment.NEGATIVE,
)
RESAMPLE_SEED = 16


def parse_task(task: Task | str) -> Task:
    """The Task for `task` (a Task or its name); an unknown name is a ValueError naming both."""
    try:
        return Task(task)
    except ValueError:
        raise ValueError(
            f"unknown task {task!r}; expected one of {[t.value for t in Task]}"
        ) from None


@dataclass(frozen=True)
class Split:
    """Texts with their label distributions (one-hot, or spread over a multi-label row)."""

    texts: list[str]
    targets: list[dict[str, float]]

    def hard_labels(self) -> list[str]:
        return [max(t, key=t.__getitem__) for t in self.targets]

    def __add__(self, other: Split) -> Split:
        return Split(self.texts + other.texts, self.targets + other.targets)

    def take(self, rows: Iterable[int]) -> Split:
        """The rows at these indices, in that order."""
        rows = list(rows)
        return Split([self.texts[i] for i in rows], [self.targets[i] for i in rows])


def load_sentiment(data_dir: Path, split: str) -> Split:
    """TweetEval sentiment `{split}_text.txt` / `{split}_labels.txt`, one tweet per line."""
    return _tweeteval(data_dir, split, TWEETEVAL_SENTIMENT)


def _tweeteval(data_dir: Path, split: str, sentiment_of: tuple[Sentiment, ...]) -> Split:
    """A TweetEval task's split, each label id read as `sentiment_of[id]`."""
    texts = (data_dir / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    ids = (data_dir / f"{split}_labels.txt").read_text(encoding="utf-8").split()
    if len(texts) != len(ids):
        raise ValueError(f"{data_dir}/{split}: {len(texts)} texts but {len(ids)} labels")
    return Split(texts, [{sentiment_of[int(i)].value: 1.0} for i in ids])


def load_emotion(data_dir: Path, split: str, *, single_label_only: bool) -> Split:
    """GoEmotions-Ekman `{split}.tsv` mapped onto our six emotions (disgust -> anger).

    Multi-label rows either spread their weight over their labels (training) or are
    dropped (evaluation, where one gold label is needed).
    """
    names = (data_dir / "labels.txt").read_text(encoding="utf-8").split()
    texts: list[str] = []
    targets: list[dict[str, float]] = []
    for line in (data_dir / f"{split}.tsv").read_text(encoding="utf-8").splitlines():
        text, label_ids, _ = line.split("\t")
        labels = {to_emotion(names[int(i)]).value for i in label_ids.split(",")}
        if single_label_only and len(labels) > 1:
            continue
        texts.append(text)
        targets.append({label: 1.0 / len(labels) for label in labels})
    return Split(texts, targets)


def load(task: Task | str, data_dir: Path, split: str, *, single_label_only: bool = False) -> Split:
    """One split of the task's data; `split` is train or val (dev for GoEmotions)."""
    if parse_task(task) is Task.SENTIMENT:
        return load_sentiment(data_dir, split)
    return load_emotion(
        data_dir, "dev" if split == "val" else split, single_label_only=single_label_only
    )


def emotions_as_sentiment(data_dir: Path, split: str) -> Split:
    """GoEmotions-Ekman single-label rows as a sentiment set (see EMOTION_SENTIMENT).

    A shift of kind, not only of mix: Reddit comments, not tweets, and labelled for emotion.
    """
    emotions = load(Task.EMOTION, data_dir, split, single_label_only=True)
    texts, targets = [], []
    for text, label in zip(emotions.texts, emotions.hard_labels(), strict=True):
        sentiment = EMOTION_SENTIMENT.get(Emotion(label))
        if sentiment is not None:
            texts.append(text)
            targets.append({sentiment.value: 1.0})
    return Split(texts, targets)


def tweet_emotions_as_sentiment(data_dir: Path, split: str) -> Split:
    """TweetEval emotion as a sentiment set: anger and sadness negative, joy and optimism positive.

    Tweets like the sentiment task's, chosen for carrying an emotion, so a third more negative
    tweets to learn from (the sentiment task's rarest class).
    """
    return _tweeteval(data_dir, split, TWEETEVAL_EMOTION_SENTIMENT)


def emotion_set_as_sentiment(data_dir: Path, split: str) -> Split:
    """An emotion set's rows as sentiment rows, whichever of the two `data_dir` holds:
    GoEmotions-Ekman (it has labels.txt; `emotions_as_sentiment`) or TweetEval emotion
    (mapping.txt naming anger, joy, optimism, sadness; `tweet_emotions_as_sentiment`)."""
    if (data_dir / "labels.txt").is_file():
        return emotions_as_sentiment(data_dir, split)
    if "optimism" in _read_or_empty(data_dir / "mapping.txt"):
        return tweet_emotions_as_sentiment(data_dir, split)
    raise ValueError(
        f"{data_dir}: not an emotion set; expected GoEmotions-Ekman (labels.txt, train.tsv) "
        "or TweetEval emotion (mapping.txt, train_text.txt, train_labels.txt)"
    )


def extra_sentiment(data_dir: Path, limit: int | None, seed: int) -> Split:
    """An emotion set's train rows as extra sentiment rows, at most `limit` (a seeded sample)."""
    split = emotion_set_as_sentiment(data_dir, "train")
    if limit is None or limit >= len(split.texts):
        return split
    kept = np.sort(np.random.default_rng(seed).choice(len(split.texts), limit, replace=False))
    return split.take(kept)


def _read_or_empty(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def resample_negative(split: Split, share: float, seed: int = RESAMPLE_SEED) -> Split:
    """A subset with `share` of negative rows, the others keeping their own mix (a label shift).

    Sampled without replacement and as large as the split allows; the same seed gives the
    same rows. Rows keep their order in `split`.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1 (got {share})")
    gold = np.array(split.hard_labels())
    negative = np.flatnonzero(gold == Sentiment.NEGATIVE.value)
    others = np.flatnonzero(gold != Sentiment.NEGATIVE.value)
    size = int(min(len(negative) / share, len(others) / (1 - share)))
    rng = np.random.default_rng(seed)
    n_negative = round(share * size)
    rows = [rng.choice(negative, n_negative, replace=False)]
    for label in sorted(set(gold[others])):
        pool = np.flatnonzero(gold == label)
        take = min(len(pool), round((size - n_negative) * len(pool) / len(others)))
        rows.append(rng.choice(pool, take, replace=False))
    kept = np.sort(np.concatenate(rows))
    return split.take(kept)


def write_rows(split: Split, out_file: Path) -> int:
    """Write a `text,label` CSV of the split's hard labels; returns the row count."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(split.texts, split.hard_labels(), strict=True))
    return len(split.texts)


def write_csv(task: Task | str, data_dir: Path, split: str, out_file: Path) -> int:
    """Write a `text,label` CSV of single-label rows, as `evaluate` reads; returns the row count."""
    return write_rows(load(task, data_dir, split, single_label_only=True), out_file)


def split_holdout(
    data_dir: Path, config: SentimentConfig, rng: np.random.Generator | None = None
) -> tuple[Split, Split]:
    """(train rows, held-out rows): the same `config.holdout` rows for the same seed and data.

    `rng` (default: a fresh one from `config.seed`) draws the permutation; training passes
    the generator it goes on using for its batches.

    The held-out rows pick each fit's best epoch and calibrate the shipped model; they are
    never trained on, so what is fitted on them is not fitted on val either.
    """
    split = load(Task.SENTIMENT, data_dir, "train")
    split = Split(split.texts[: config.limit], split.targets[: config.limit])
    rng = rng or np.random.default_rng(config.seed)
    kept = rng.permutation(len(split.texts))
    return split.take(kept[config.holdout :]), split.take(kept[: config.holdout])


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Turn the shared data into a text,label CSV (optionally a shifted set)."
    )
    parser.add_argument("--task", choices=[t.value for t in Task], required=True)
    parser.add_argument("--data", type=Path, required=True, help="the task's data dir")
    parser.add_argument("--split", default="val", help="train or val (default val)")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    parser.add_argument(
        "--from-emotions",
        action="store_true",
        help="sentiment from an emotion set (--data is its dir). GoEmotions-Ekman: joy "
        "positive; anger, disgust, sadness, fear negative; neutral neutral; surprise and "
        "multi-label rows out. TweetEval emotion: anger, sadness negative; joy, optimism "
        "positive",
    )
    parser.add_argument(
        "--negative-share",
        type=float,
        help="resample the sentiment rows to this share of negatives, e.g. 0.1",
    )
    parser.add_argument("--seed", type=int, default=RESAMPLE_SEED, help="for --negative-share")
    args = parser.parse_args()
    task = Task(args.task)
    if (args.from_emotions or args.negative_share) and task is not Task.SENTIMENT:
        parser.error("--from-emotions and --negative-share make sentiment sets: --task sentiment")
    if args.from_emotions:
        split = emotion_set_as_sentiment(args.data, args.split)
    else:
        split = load(task, args.data, args.split, single_label_only=True)
    if args.negative_share is not None:
        split = resample_negative(split, args.negative_share, args.seed)
    print(f"{write_rows(split, args.out)} rows -> {args.out}")


if __name__ == "__main__":
    main()
