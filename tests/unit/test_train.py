"""`train` end to end on a tiny random encoder the test builds (no download, no shared data):
both steps write an artifact the embedded backend loads and whose recorded scores it reproduces.

The shipped model's quality is tested in test_embedded_model.py; this is about the code path
(teachers, distillation, ONNX export and int8 quantisation, class offsets for honest shares,
the confusion matrix, recalibration of an existing artifact, emotion head).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentiment_platform.domain import Emotion, Sentiment, Task
from sentiment_platform.services.analysis.embedded_backend import EmbeddedBackend
from sentiment_platform.services.analysis.quantification import load_confusion
from sentiment_platform.training.calibrate import recalibrate
from sentiment_platform.training.data import SENTIMENT_LABELS, load_sentiment
from sentiment_platform.training.metrics import scores, share_scores
from sentiment_platform.training.train import (
    MODEL_NAME,
    EmotionConfig,
    SentimentConfig,
    train,
)
from tests.support.hf_tiny import build_tiny_classifier

# (text, TweetEval label id: 0 negative, 1 neutral, 2 positive), (text, GoEmotions-Ekman id)
TWEETS = [
    ("I love this so much, what a great day", 2),
    ("this is terrible and I hate it", 0),
    ("the meeting is at noon on tuesday", 1),
    ("@someone check https://example.com/page for the news", 1),
    ("disgusting service, never again", 0),
    ("feeling sad and lonely tonight", 0),
    ("wow what a great surprise, love it", 2),
]
EKMAN = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
COMMENTS = [
    ("disgusting service, never again", "1"),
    ("this is terrible and I hate it", "0"),
    ("so scared about tomorrow, worried sick", "2"),
    ("I love this so much, what a great day", "3"),
    ("the meeting is at noon on tuesday", "4"),
    ("feeling sad and lonely tonight", "5"),
    ("wow did not expect that at all", "6"),
    ("wow, love it", "3,6"),  # multi-label: the head is fitted and scored on single labels
]


def _sentiment_data(root: Path) -> Path:
    for split, copies in (("train", 8), ("val", 2)):
        rows = TWEETS * copies
        (root / f"{split}_text.txt").write_text("\n".join(t for t, _ in rows) + "\n")
        (root / f"{split}_labels.txt").write_text("\n".join(str(i) for _, i in rows) + "\n")
    return root


def _tweet_emotion_data(root: Path) -> Path:
    """TweetEval emotion's layout: anger, joy, optimism, sadness; added as sentiment rows."""
    root.mkdir()
    (root / "mapping.txt").write_text("0\tanger\n1\tjoy\n2\toptimism\n3\tsadness")
    rows = [("so angry at this", 0), ("what joy", 1), ("it will be fine", 2), ("so sad", 3)]
    (root / "train_text.txt").write_text("\n".join(t for t, _ in rows * 3) + "\n")
    (root / "train_labels.txt").write_text("\n".join(str(i) for _, i in rows * 3) + "\n")
    return root


def _emotion_data(root: Path) -> Path:
    (root / "labels.txt").write_text("\n".join(EKMAN) + "\n")
    for split, copies in (("train", 6), ("dev", 2)):
        lines = [f"{text}\t{ids}\tid{n}" for n, (text, ids) in enumerate(COMMENTS * copies)]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_both_steps_write_an_artifact_the_backend_serves(tmp_path: Path) -> None:
    base = build_tiny_classifier(tmp_path / "base", list(SENTIMENT_LABELS), arch="bert")
    sentiment_dir = tmp_path / "sentiment"
    emotion_dir = tmp_path / "emotion"
    sentiment_dir.mkdir()
    emotion_dir.mkdir()
    out = tmp_path / "model"
    extra = _tweet_emotion_data(tmp_path / "tweet_emotion")
    config = SentimentConfig(
        base_model=str(base),
        extra_data=(str(extra),),
        layers=1,
        teacher_layers=2,
        teachers=2,
        teacher_epochs=1,
        epochs=1,
        batch_size=8,
        holdout=21,  # every class among them: the confusion matrix needs a row for each
        bf16=False,
    )

    sentiment = train(Task.SENTIMENT, _sentiment_data(sentiment_dir), out, config)
    emotion = train("emotion", _emotion_data(emotion_dir), out, EmotionConfig())

    written = json.loads((out / "config.json").read_text())
    assert written["name"] == MODEL_NAME
    assert written["layers"] == 1
    assert written["feature_size"] == 32 * 2  # embeddings + 1 layer, pooled
    assert written["base_model"] == str(base)
    assert written["sentiment_config"]["extra_data"] == [str(extra)]
    assert len(written["sentiment_bias"]) == 3 and written["sentiment_bias"][1] == 0.0
    assert written["sentiment"]["split"] == "val" and written["emotion"]["split"].startswith("dev")
    assert 0 <= sentiment["macro_recall"] <= 100 and 0 <= emotion["macro_f1"] <= 100
    assert emotion["train_rows"] == (len(COMMENTS) - 1) * 6
    # The calibration step: offsets for shares, and the confusion matrix on the held-out rows.
    assert written["sentiment_calibration"]["held_out_rows"] == 21
    confusion = load_confusion(out)
    assert confusion is not None and set(confusion) == set(Sentiment)
    for row in confusion.values():
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-3)
    assert set(written["sentiment_confusion"]["true_counts"]) == set(SENTIMENT_LABELS)
    assert sum(written["sentiment_confusion"]["true_counts"].values()) == 21

    # Same threads as `train` scored with, so the same chunks: int8 activations are scaled per
    # ONNX call, and a borderline text's label can move with what it is batched with.
    backend = EmbeddedBackend(out, threads=config.threads)
    try:
        val = load_sentiment(sentiment_dir, "val")
        predictions = backend.predict(val.texts)
        assert {p.model for p in predictions} == {MODEL_NAME}
        assert all(isinstance(p.sentiment, Sentiment) for p in predictions)
        assert all(isinstance(p.emotion, Emotion) for p in predictions)
        assert all(0 < p.confidence <= 1 for p in predictions)
        # The score `train` recorded is the one the served model gets on the same texts.
        served = [p.sentiment.value for p in predictions]
        recorded = {k: sentiment[k] for k in ("macro_recall", "macro_f1", "accuracy")}
        assert scores(val.hard_labels(), served, SENTIMENT_LABELS) == recorded
        shares = share_scores(val.hard_labels(), served, SENTIMENT_LABELS)
        assert shares == {k: sentiment[k] for k in shares}
        assert backend.confusion == confusion
    finally:
        backend.close()

    # Calibrating the artifact again (how a new calibration ships without retraining) finds
    # the same offsets and matrix: the same held-out rows, rebuilt from the recorded config.
    again = recalibrate(out, sentiment_dir, threads=config.threads)
    rewritten = json.loads((out / "config.json").read_text())
    assert rewritten["sentiment_bias"] == written["sentiment_bias"]
    assert rewritten["sentiment_confusion"] == written["sentiment_confusion"]
    assert rewritten["sentiment_calibration"]["encoder_from"] == MODEL_NAME
    assert again["macro_recall"] == sentiment["macro_recall"]
    assert rewritten["emotion"] == written["emotion"]  # the emotion head is not touched


@pytest.mark.parametrize("option", ["--extra-data", "--device"])
def test_extra_data_and_device_are_for_the_sentiment_step(tmp_path: Path, option: str) -> None:
    from typer.testing import CliRunner

    from sentiment_platform.cli import app

    extra = _tweet_emotion_data(tmp_path / "tweet_emotion")
    command = ["train", "--task", "emotion", "--data", str(extra), "--out", str(tmp_path)]
    value = str(extra) if option == "--extra-data" else "cuda"
    result = CliRunner().invoke(app, [*command, option, value])
    assert result.exit_code == 2
    assert "use them with --task sentiment" in result.output
