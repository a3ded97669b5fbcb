"""Score a backend on a labelled `text,label` CSV: macro-recall, macro-F1, accuracy, class
shares, posts/s.

The embedded backend is called directly; any other name goes through the analyzer chain
restricted to that one backend, so what is measured is what the platform would serve.
For sentiment, the JSON also has each class's true and predicted share (classify-and-count,
as the aggregator counts) and the largest share error; with a model that ships its confusion
matrix, the shares adjusted for it (`services/quantification.py`) and their largest error.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Prediction, Sentiment, Task
from sentiment_platform.services.analysis.quantification import Confusion, adjusted_shares
from sentiment_platform.training.data import parse_task
from sentiment_platform.training.metrics import max_share_error, scores, share_scores, shares

BATCH_SIZE = 256  # texts per backend call, as a worker batch would send them
TASK_LABELS: dict[Task, tuple[str, ...]] = {
    Task.SENTIMENT: tuple(s.value for s in Sentiment),
    Task.EMOTION: tuple(e.value for e in Emotion),
}


def read_labelled_csv(task: Task | str, data_file: Path) -> tuple[list[str], list[str]]:
    """Texts and gold labels; an unknown label is an error naming its line, never skipped."""
    task = parse_task(task)
    texts, gold = [], []
    with data_file.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{data_file}: needs the columns text,label (got {reader.fieldnames})")
        for row in reader:
            label = row["label"].strip().lower()
            if label not in TASK_LABELS[task]:
                raise ValueError(
                    f"{data_file} line {reader.line_num}: label {row['label']!r} is not a "
                    f"{task} label {TASK_LABELS[task]}"
                )
            texts.append(row["text"])
            gold.append(label)
    if not texts:
        raise ValueError(f"{data_file} has no rows")
    return texts, gold


def _batches(texts: Sequence[str]) -> list[Sequence[str]]:
    return [texts[start : start + BATCH_SIZE] for start in range(0, len(texts), BATCH_SIZE)]


def _predict_embedded(
    texts: Sequence[str], settings: Settings
) -> tuple[list[Prediction], float, Confusion | None]:
    from sentiment_platform.services.analysis.embedded_backend import load_embedded_backend

    backend = load_embedded_backend(settings)
    try:
        started = time.perf_counter()
        predictions = [p for batch in _batches(texts) for p in backend.predict(batch)]
        return predictions, time.perf_counter() - started, backend.confusion
    finally:
        backend.close()


def _predict_chain(
    name: str, texts: Sequence[str], settings: Settings
) -> tuple[list[Prediction], float]:
    """Through the analyzer with only `name` in its chain, as the platform would serve it."""
    from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer

    only = settings.model_copy(update={"analyzer_backends": [name]})
    analyzer = SentimentAnalyzer.from_settings(only)
    started = time.perf_counter()
    predictions = [p for batch in _batches(texts) for p in analyzer.analyze_blocking(batch)]
    return predictions, time.perf_counter() - started


def adjusted_share_scores(
    gold: Sequence[str], predicted: Sequence[Sentiment], confusion: Confusion
) -> dict[str, Any]:
    """Shares (percent) adjusted for `confusion`, and their largest error against the truth."""
    labels = TASK_LABELS[Task.SENTIMENT]
    adjusted = adjusted_shares(Counter(predicted), confusion)
    percent = {s.value: 100 * share for s, share in adjusted.items()}
    return {
        "share_adjusted": {label: round(percent[label], 2) for label in labels},
        "max_adjusted_share_error": round(max_share_error(shares(gold, labels), percent), 2),
    }


def evaluate(
    task: Task | str, data_file: Path, backend: str | None, settings: Settings
) -> dict[str, Any]:
    """Predict every row in batches of 256 and score it; posts/s counts model calls only."""
    task = parse_task(task)
    texts, gold = read_labelled_csv(task, data_file)
    name = backend or "embedded"
    confusion: Confusion | None = None
    if name == "embedded":
        predictions, seconds, confusion = _predict_embedded(texts, settings)
    else:
        predictions, seconds = _predict_chain(name, texts, settings)
    if len(predictions) != len(texts):
        raise RuntimeError(
            f"backend {name} returned {len(predictions)} predictions for {len(texts)} texts"
        )
    if task is Task.SENTIMENT:
        predicted = [p.sentiment.value for p in predictions]
    else:
        predicted = [p.emotion.value for p in predictions]
    result: dict[str, Any] = {
        "task": task.value,
        "backend": name,
        "n": len(texts),
        **scores(gold, predicted, TASK_LABELS[task]),
    }
    if task is Task.SENTIMENT:
        result |= share_scores(gold, predicted, TASK_LABELS[task])
        if confusion is not None:
            result |= adjusted_share_scores(gold, [p.sentiment for p in predictions], confusion)
    result["posts_per_s"] = round(len(texts) / seconds, 1)
    return result
