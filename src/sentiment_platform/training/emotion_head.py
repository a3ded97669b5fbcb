"""Step 2: a linear emotion head on the shipped encoder's frozen features (GoEmotions-Ekman).

The encoder stays as step 1 left it, so the sentiment scores do not move.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_platform.domain import Task
from sentiment_platform.training import data as datasets
from sentiment_platform.training.configs import EmotionConfig
from sentiment_platform.training.data import EMOTION_LABELS
from sentiment_platform.training.metrics import scores
from sentiment_platform.training.onnx_export import write_config

logger = logging.getLogger(__name__)


def train_emotion(data_dir: Path, out_dir: Path, config: EmotionConfig) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from sentiment_platform.services.analysis.embedded_backend import OnnxEncoder

    if not (out_dir / "model.onnx").exists():
        raise FileNotFoundError(f"{out_dir}/model.onnx missing: run `train --task sentiment` first")
    encoder = OnnxEncoder(out_dir, threads=config.threads)
    labels = EMOTION_LABELS
    started = time.monotonic()
    train_split = datasets.load(Task.EMOTION, data_dir, "train", single_label_only=True)
    texts, gold = train_split.texts[: config.limit], train_split.hard_labels()[: config.limit]
    _, features = encoder.run(texts)
    logger.info("emotion features for %d rows in %.0fs", len(texts), time.monotonic() - started)

    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(C=config.c, class_weight=config.class_weight, max_iter=2000)
    classifier.fit(scaler.transform(features), [labels.index(g) for g in gold])
    # Fold the scaler into the linear layer: logits = x @ weight + bias.
    weight = (classifier.coef_ / scaler.scale_).T.astype(np.float32)
    bias = classifier.intercept_ - (classifier.coef_ * scaler.mean_ / scaler.scale_).sum(1)
    np.savez(out_dir / "emotion_head.npz", weight=weight, bias=bias.astype(np.float32))

    val = datasets.load(Task.EMOTION, data_dir, "val", single_label_only=True)
    _, val_features = encoder.run(val.texts)
    predicted = [labels[i] for i in (val_features @ weight + bias).argmax(axis=1)]
    result = scores(val.hard_labels(), predicted, labels) | {
        "split": "dev (single-label rows)",
        "train_rows": len(texts),
        "train_seconds": round(time.monotonic() - started),
        "emotion_config": asdict(config),
    }
    write_config(out_dir, emotion=result)
    return result
