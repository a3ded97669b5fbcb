"""`evaluate` reports class shares beside recall, and the shifted sets shares are checked on."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sentiment_platform.config import Settings
from sentiment_platform.domain import Task
from sentiment_platform.training.calibrate import fit_offsets
from sentiment_platform.training.data import (
    Split,
    emotions_as_sentiment,
    extra_sentiment,
    parse_task,
    resample_negative,
)
from sentiment_platform.training.evaluate import evaluate
from sentiment_platform.training.metrics import share_scores

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SENTIMENT_DATA = SHARED_DATA / "tweeteval" / "sentiment"


def test_share_scores_count_like_the_aggregator() -> None:
    gold = ["negative"] * 2 + ["neutral"] * 5 + ["positive"] * 3
    predicted = ["negative"] * 4 + ["neutral"] * 3 + ["positive"] * 3
    result = share_scores(gold, predicted, ["negative", "neutral", "positive"])
    assert result == {
        "share_true": {"negative": 20.0, "neutral": 50.0, "positive": 30.0},
        "share_predicted": {"negative": 40.0, "neutral": 30.0, "positive": 30.0},
        "max_share_error": 20.0,
    }


def test_evaluate_prints_shares_and_the_adjusted_estimate(tmp_path: Path) -> None:
    rows = [
        ("I love this so much, best day of my life!", "positive"),
        ("This is awful. I hate it, worst service ever.", "negative"),
        ("The meeting is moved to Thursday at 10am.", "neutral"),
        ("Thank you all so much, what a wonderful evening!", "positive"),
    ]
    data = tmp_path / "sample.csv"
    with data.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    result = evaluate(Task.SENTIMENT, data, "embedded", Settings())
    for key in ("macro_recall", "macro_f1", "accuracy", "posts_per_s", "n"):
        assert key in result  # the keys that were there stay
    assert result["share_true"] == {"negative": 25.0, "neutral": 25.0, "positive": 50.0}
    assert sum(result["share_predicted"].values()) == pytest.approx(100.0)
    errors = [abs(result["share_predicted"][k] - v) for k, v in result["share_true"].items()]
    assert result["max_share_error"] == pytest.approx(max(errors))
    assert sum(result["share_adjusted"].values()) == pytest.approx(100.0, abs=0.05)
    assert result["max_adjusted_share_error"] >= 0
    json.dumps(result)  # the CLI's last line


def test_emotion_evaluation_has_no_sentiment_shares(tmp_path: Path) -> None:
    data = tmp_path / "emotion.csv"
    data.write_text("text,label\nI am so happy today!,joy\nThis makes me furious,anger\n")
    result = evaluate("emotion", data, None, Settings())
    assert result["task"] == "emotion" and "share_true" not in result


def test_unknown_task_names_the_choices() -> None:
    assert parse_task("sentiment") is Task.SENTIMENT
    with pytest.raises(ValueError, match="expected one of"):
        parse_task("sarcasm")


def _split(counts: dict[str, int]) -> Split:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return Split([f"text {i}" for i in range(len(labels))], [{label: 1.0} for label in labels])


@pytest.mark.parametrize("share", [0.10, 0.33, 0.50])
def test_resampling_sets_the_negative_share_and_keeps_the_rest_of_the_mix(share: float) -> None:
    split = _split({"negative": 300, "neutral": 900, "positive": 800})
    shifted = resample_negative(split, share)
    counts = Counter(shifted.hard_labels())
    assert counts["negative"] / len(shifted.texts) == pytest.approx(share, abs=0.005)
    assert counts["neutral"] / counts["positive"] == pytest.approx(900 / 800, rel=0.02)
    assert len(set(shifted.texts)) == len(shifted.texts)  # no row twice
    assert resample_negative(split, share) == shifted  # the same rows every time
    assert resample_negative(split, share, seed=1) != shifted


def test_goemotions_maps_to_sentiment_without_surprise(tmp_path: Path) -> None:
    names = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    rows = [
        ("so angry", "0"),
        ("gross", "1"),
        ("scared", "2"),
        ("yay", "3"),
        ("it is tuesday", "4"),
        ("so sad", "5"),
        ("whoa", "6"),
        ("yay but scared", "2,3"),  # multi-label: out
        ("angry and grossed out", "0,1"),  # both anger once disgust is mapped: one label
    ]
    (tmp_path / "dev.tsv").write_text(
        "".join(f"{t}\t{i}\tid{n}\n" for n, (t, i) in enumerate(rows))
    )
    split = emotions_as_sentiment(tmp_path, "val")
    assert dict(zip(split.texts, split.hard_labels(), strict=True)) == {
        "so angry": "negative",
        "gross": "negative",
        "scared": "negative",
        "yay": "positive",
        "it is tuesday": "neutral",
        "so sad": "negative",
        "angry and grossed out": "negative",
    }


def test_emotion_sets_add_sentiment_rows(tmp_path: Path) -> None:
    """Extra training rows: TweetEval emotion (no neutral class) and GoEmotions, sampled."""
    tweets = tmp_path / "tweeteval_emotion"
    tweets.mkdir()
    (tweets / "mapping.txt").write_text("0\tanger\n1\tjoy\n2\toptimism\n3\tsadness")
    (tweets / "train_text.txt").write_text("so angry\nyay\nit will be fine\nso sad\n")
    (tweets / "train_labels.txt").write_text("0\n1\n2\n3\n")
    split = extra_sentiment(tweets, limit=None, seed=13)
    assert split.hard_labels() == ["negative", "positive", "positive", "negative"]

    comments = tmp_path / "goemotions"
    comments.mkdir()
    (comments / "labels.txt").write_text("anger\njoy\nneutral\nsurprise\n")
    lines = [f"comment {n}\t{n % 4}\tid{n}" for n in range(40)]
    (comments / "train.tsv").write_text("\n".join(lines) + "\n")
    sample = extra_sentiment(comments, limit=12, seed=13)
    assert len(sample.texts) == 12 and len(set(sample.texts)) == 12
    assert sample == extra_sentiment(comments, limit=12, seed=13)  # seeded: the same rows
    assert "neutral" in sample.hard_labels()  # surprise rows are left out, the rest kept
    assert len(extra_sentiment(comments, limit=None, seed=13).texts) == 30

    with pytest.raises(ValueError, match="not an emotion set"):
        extra_sentiment(tmp_path, limit=None, seed=13)


def test_offsets_are_chosen_for_shares_not_recall() -> None:
    """A model that over-calls class 0: the offsets bring its count back to the truth."""
    rng = np.random.default_rng(0)
    gold = rng.choice(3, size=3000, p=[0.15, 0.45, 0.40])
    logits = rng.normal(size=(3000, 3)) + 2.0 * np.eye(3)[gold]
    logits[:, 0] += 1.0  # over-calls class 0
    offsets, figures = fit_offsets(logits, gold, tolerance=1.5)
    assert offsets[1] == 0.0 and offsets[0] < 0
    assert figures["max_share_error"] <= 1.5
    predicted = (logits + np.array(offsets)).argmax(axis=1)
    assert abs(np.mean(predicted == 0) - np.mean(gold == 0)) <= 0.015


@pytest.mark.skipif(not SENTIMENT_DATA.is_dir(), reason=f"no shared data at {SENTIMENT_DATA}")
def test_data_command_writes_a_shifted_csv(tmp_path: Path) -> None:
    out = tmp_path / "val_neg50.csv"
    command = [
        sys.executable,
        "-m",
        "sentiment_platform.training.data",
        "--task",
        "sentiment",
        "--data",
        str(SENTIMENT_DATA),
        "--negative-share",
        "0.5",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True)
    with out.open(newline="") as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    assert Counter(labels)["negative"] / len(labels) == pytest.approx(0.5, abs=0.005)
