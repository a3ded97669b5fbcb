"""The shipped embedded model: it loads from the package, labels plain texts sensibly, and
keeps its measured quality on TweetEval validation tweets (no training here; seconds)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Sentiment
from sentiment_platform.services.analysis.backends import Backend
from sentiment_platform.services.analysis.embedded_backend import (
    EmbeddedBackend,
    OnnxEncoder,
    load_embedded_backend,
)
from sentiment_platform.training.data import load_sentiment
from sentiment_platform.training.metrics import scores, share_scores

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SENTIMENT_DATA = SHARED_DATA / "tweeteval" / "sentiment"


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    return load_embedded_backend(Settings(), threads=2)


def test_artifact_ships_inside_the_package() -> None:
    files = resources.files("sentiment_platform") / "embedded_model"
    for name in (
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "emotion_head.npz",
        "MODEL_CARD.md",
    ):
        assert (files / name).is_file(), name
    size = sum((files / n).stat().st_size for n in ("model.onnx", "tokenizer.json"))
    assert size < 25 * 2**20


def test_loads_as_a_backend_named_in_predictions(backend: EmbeddedBackend) -> None:
    assert isinstance(backend, Backend)
    predictions = backend.predict(["hello there", "what a day"])
    assert [p.model for p in predictions] == [backend.name] * 2
    assert backend.name.startswith("embedded/")
    assert backend.predict([]) == []


def test_obvious_texts_get_obvious_labels(backend: EmbeddedBackend) -> None:
    texts = {
        "I love this so much, best day of my life!": (Sentiment.POSITIVE, Emotion.JOY),
        "This is awful. I hate it, worst service ever.": (Sentiment.NEGATIVE, Emotion.ANGER),
        "I miss her so much, I can't stop crying.": (Sentiment.NEGATIVE, Emotion.SADNESS),
    }
    predictions = backend.predict(list(texts))
    for (text, (sentiment, emotion)), prediction in zip(texts.items(), predictions, strict=True):
        assert (prediction.sentiment, prediction.emotion) == (sentiment, emotion), text
        assert 0.0 < prediction.confidence <= 1.0
        assert 0.0 < prediction.emotion_confidence <= 1.0


def test_results_do_not_hinge_on_the_batch(backend: EmbeddedBackend) -> None:
    """Order is kept; int8 activations are scaled per call, so scores may move only a little."""
    texts = [
        "Thank you all so much, what a wonderful evening!",
        "The train was late again and nobody told us anything. Useless.",
        "The meeting is moved to Thursday at 10am.",
    ]
    together = backend.predict(texts)
    alone = [backend.predict([text])[0] for text in texts]
    assert [p.sentiment for p in together] == [
        Sentiment.POSITIVE,
        Sentiment.NEGATIVE,
        Sentiment.NEUTRAL,
    ]
    assert [p.sentiment for p in alone] == [p.sentiment for p in together]
    for a, b in zip(together, alone, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=0.05)


@pytest.fixture(scope="module")
def val_labels(backend: EmbeddedBackend) -> tuple[list[str], list[str]]:
    """TweetEval val (2,000 tweets): gold labels and the model's, in batches of 256 as
    `evaluate` and a worker batch them (int8 activations are scaled per call). The whole
    split: a half of it moves macro-recall by ±2 points between halves."""
    if not SENTIMENT_DATA.is_dir():
        pytest.skip(f"shared data not found at {SENTIMENT_DATA}")
    val = load_sentiment(SENTIMENT_DATA, "val")
    texts = val.texts
    predicted = [
        p.sentiment.value
        for start in range(0, len(texts), 256)
        for p in backend.predict(texts[start : start + 256])
    ]
    return val.hard_labels(), predicted


def test_macro_recall_on_validation(val_labels: tuple[list[str], list[str]]) -> None:
    """The card's 71.5 (71.3 on a CPU without AVX-512 VNNI, whose int8 kernels differ)."""
    result = scores(*val_labels, [s.value for s in Sentiment])
    assert result["macro_recall"] > 70, result


def test_class_shares_on_validation_are_within_three_points(
    val_labels: tuple[list[str], list[str]],
) -> None:
    """The platform reports shares: counting the model's labels must not misstate the mix."""
    result = share_scores(*val_labels, [s.value for s in Sentiment])
    assert result["max_share_error"] <= 3, result


def test_thread_count_comes_from_the_settings() -> None:
    backend = load_embedded_backend(Settings(_env_file=None, embedded_threads=1))  # type: ignore[call-arg]
    assert backend.encoder.threads == 1


def test_chunks_in_parallel_land_in_their_own_rows() -> None:
    """Chunks run on several threads; every row must come back where its text was."""
    files = resources.files("sentiment_platform") / "embedded_model"
    texts = [f"post number {i}: " + "so good " * (i % 7) + "so bad " * (i % 5) for i in range(150)]
    one = OnnxEncoder(files, threads=1, chunk_size=16).run(texts)
    many = OnnxEncoder(files, threads=3, chunk_size=16).run(texts)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, b)


def test_calibrated_class_offsets_are_applied(tmp_path: Path) -> None:
    """`train` stores log-probability offsets in config.json; the encoder adds them."""
    files = resources.files("sentiment_platform") / "embedded_model"
    for name in ("model.onnx", "tokenizer.json", "config.json"):
        (tmp_path / name).write_bytes((files / name).read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    texts = ["I love this so much!", "The meeting is at ten.", "Worst service ever."]
    plain = OnnxEncoder(tmp_path).run(texts)[0]
    (tmp_path / "config.json").write_text(json.dumps(config | {"sentiment_bias": [0, 0, 20]}))
    shifted = OnnxEncoder(tmp_path).run(texts)[0]
    positive = config["sentiment_labels"].index("positive")
    assert plain.argmax(axis=1).tolist() != [positive] * 3
    assert shifted.argmax(axis=1).tolist() == [positive] * 3
