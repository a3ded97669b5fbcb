"""Score a backend on a labelled `text,label` CSV: macro-recall, macro-F1, accuracy, posts/s.

The embedded backend is called directly; any other name goes through the analyzer chain
restricted to that one backend, so what is measured is what the platform would serve.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Prediction, Sentiment
from sentiment_platform.training.metrics import scores

BATCH_SIZE = 256  # texts per backend call, as a worker batch would send them
TASK_LABELS: dict[str, tuple[str, ...]] = {
    "sentiment": tuple(s.value for s in Sentiment),
    "emotion": tuple(e.value for e in Emotion),
}


def read_labelled_csv(task: str, data_file: Path) -> tuple[list[str], list[str]]:
    """Texts and gold labels; an unknown label is an error naming its line, never skipped."""
    if task not in TASK_LABELS:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(TASK_LABELS)}")
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


def _predict_embedded(texts: Sequence[str], settings: Settings) -> tuple[list[Prediction], float]:
    from sentiment_platform.services.embedded_backend import load_embedded_backend

    backend = load_embedded_backend(settings)
    started = time.perf_counter()
    predictions = [p for batch in _batches(texts) for p in backend.predict(batch)]
    return predictions, time.perf_counter() - started


def _predict_chain(
    name: str, texts: Sequence[str], settings: Settings
) -> tuple[list[Prediction], float]:
    """Through the analyzer with only `name` in its chain, as the platform would serve it."""
    from sentiment_platform.services.sentiment_analyzer import SentimentAnalyzer

    only = settings.model_copy(update={"analyzer_backends": [name]})
    analyzer = SentimentAnalyzer.from_settings(only)
    started = time.perf_counter()
    predictions = [p for batch in _batches(texts) for p in analyzer.analyze_blocking(batch)]
    return predictions, time.perf_counter() - started


def evaluate(task: str, data_file: Path, backend: str | None, settings: Settings) -> dict[str, Any]:
    """Predict every row in batches of 256 and score it; posts/s counts model calls only."""
    texts, gold = read_labelled_csv(task, data_file)
    name = backend or "embedded"
    if name == "embedded":
        predictions, seconds = _predict_embedded(texts, settings)
    else:
        predictions, seconds = _predict_chain(name, texts, settings)
    if len(predictions) != len(texts):
        raise RuntimeError(
            f"backend {name} returned {len(predictions)} predictions for {len(texts)} texts"
        )
    predicted = [p.sentiment.value if task == "sentiment" else p.emotion.value for p in predictions]
    return {
        "task": task,
        "backend": name,
        "n": len(texts),
        **scores(gold, predicted, TASK_LABELS[task]),
        "posts_per_s": round(len(texts) / seconds, 1),
    }
