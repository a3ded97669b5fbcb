"""Readers for the shared training data, and a writer for the `text,label` CSVs `evaluate` reads.

The data stays in shared/data; CSVs are written wherever the caller says (a temp dir), never
into the repository.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

from sentiment_platform.domain import Emotion, Sentiment, to_emotion

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
TASKS = ("sentiment", "emotion")


@dataclass(frozen=True)
class Split:
    """Texts with their label distributions (one-hot, or spread over a multi-label row)."""

    texts: list[str]
    targets: list[dict[str, float]]

    def hard_labels(self) -> list[str]:
        return [max(t, key=t.__getitem__) for t in self.targets]


def load_sentiment(data_dir: Path, split: str) -> Split:
    """TweetEval sentiment `{split}_text.txt` / `{split}_labels.txt`, one tweet per line."""
    texts = (data_dir / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    ids = (data_dir / f"{split}_labels.txt").read_text(encoding="utf-8").split()
    if len(texts) != len(ids):
        raise ValueError(f"{data_dir}/{split}: {len(texts)} texts but {len(ids)} labels")
    targets = [{TWEETEVAL_SENTIMENT[int(i)].value: 1.0} for i in ids]
    return Split(texts, targets)


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


def load(task: str, data_dir: Path, split: str, *, single_label_only: bool = False) -> Split:
    """One split of the task's data; `split` is train or val (dev for GoEmotions)."""
    if task == "sentiment":
        return load_sentiment(data_dir, split)
    if task == "emotion":
        return load_emotion(
            data_dir, "dev" if split == "val" else split, single_label_only=single_label_only
        )
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def write_csv(task: str, data_dir: Path, split: str, out_file: Path) -> int:
    """Write a `text,label` CSV of single-label rows, as `evaluate` reads; returns the row count."""
    data = load(task, data_dir, split, single_label_only=True)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(data.texts, data.hard_labels(), strict=True))
    return len(data.texts)


def main() -> None:
    parser = argparse.ArgumentParser(description="Turn the shared data into a text,label CSV.")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the task's data dir")
    parser.add_argument("--split", default="val", help="train or val (default val)")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = parser.parse_args()
    print(f"{write_csv(args.task, args.data, args.split, args.out)} rows -> {args.out}")


if __name__ == "__main__":
    main()
