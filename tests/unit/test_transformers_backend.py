"""The transformers backend against real (tiny, random-weight) checkpoints saved on disk."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Sentiment
from sentiment_platform.services.analysis.backends import Backend, BackendUnavailable
from sentiment_platform.services.analysis.transformers_backend import (
    emotion_classes,
    load_transformers_backend,
    preprocess,
    sentiment_classes,
)
from tests.support.hf_tiny import (
    GENERIC_LABELS,
    HARTMANN_LABELS,
    SENTIMENT_LABELS,
    build_tiny_classifier,
)

TEXTS = [
    "I love this so much",
    "@someone this is terrible https://t.co/abc",
    "meeting at noon",
    "worried " * 200,  # far past the 64-token limit: must be truncated, not crash
    "wow",
    "feeling sad and lonely tonight, not great",
    "disgusting service never again",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "named": build_tiny_classifier(root / "named-sentiment", SENTIMENT_LABELS, "roberta"),
        "generic": build_tiny_classifier(root / "generic-sentiment", GENERIC_LABELS, "roberta"),
        "emotion": build_tiny_classifier(root / "hartmann-emotion", HARTMANN_LABELS, "bert"),
    }


def settings_for(sentiment: Path | str, emotion: Path | str, **extra: object) -> Settings:
    return Settings(
        _env_file=None, sentiment_model=str(sentiment), emotion_model=str(emotion), **extra
    )


@functools.cache
def _load(model_dir: Path) -> tuple[Any, Any]:
    return (
        AutoTokenizer.from_pretrained(model_dir, local_files_only=True),
        AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True),
    )


def reference(model_dir: Path, text: str) -> dict[str, float]:
    """A direct, unbatched forward pass: probabilities keyed by the model's own label names."""
    tokenizer, model = _load(model_dir)
    encoded = tokenizer(preprocess(text), truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        probs = model(**encoded).logits.softmax(-1)[0]
    return {model.config.id2label[i]: float(p) for i, p in enumerate(probs)}


def test_preprocess_follows_cardiffnlp() -> None:
    assert preprocess("@bob hi http://x.co/a @ https:x ok") == "@user hi http @ http ok"


def test_label_maps() -> None:
    assert sentiment_classes({0: "Negative", 1: "neutral", 2: "POSITIVE"}) == [
        Sentiment.NEGATIVE,
        Sentiment.NEUTRAL,
        Sentiment.POSITIVE,
    ]
    assert sentiment_classes({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}) == [
        Sentiment.NEGATIVE,
        Sentiment.NEUTRAL,
        Sentiment.POSITIVE,
    ]
    with pytest.raises(ValueError, match="3-way"):
        sentiment_classes({0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ValueError, match="unknown sentiment label"):
        sentiment_classes({0: "toxic", 1: "fine"})
    assert emotion_classes(dict(enumerate(HARTMANN_LABELS))) == [
        Emotion.ANGER,
        Emotion.ANGER,  # disgust
        Emotion.FEAR,
        Emotion.JOY,
        Emotion.NEUTRAL,
        Emotion.SADNESS,
        Emotion.SURPRISE,
    ]


def test_predicts_one_per_text_in_order_matching_a_direct_forward_pass(
    models: dict[str, Path],
) -> None:
    # batch_size=3 forces several length-sorted chunks, each padded differently.
    backend = load_transformers_backend(
        settings_for(models["named"], models["emotion"], model_batch_size=3)
    )
    assert isinstance(backend, Backend)
    assert backend.name == "transformers/named-sentiment"

    predictions = backend.predict(TEXTS)

    assert len(predictions) == len(TEXTS)
    for text, prediction in zip(TEXTS, predictions, strict=True):
        sentiment = reference(models["named"], text)
        expected = max(sentiment, key=sentiment.__getitem__)
        assert prediction.sentiment == Sentiment(expected)
        assert prediction.confidence == pytest.approx(sentiment[expected], abs=1e-4)

        raw = reference(models["emotion"], text)
        # j-hartmann's disgust counts as anger: the two probabilities add up.
        emotion = {
            "anger": raw["anger"] + raw["disgust"],
            **{k: v for k, v in raw.items() if k not in ("anger", "disgust")},
        }
        best = max(emotion, key=emotion.__getitem__)
        assert prediction.emotion == Emotion(best)
        assert prediction.emotion_confidence == pytest.approx(emotion[best], abs=1e-4)
        assert 0.0 <= prediction.confidence <= 1.0
        assert 0.0 <= prediction.emotion_confidence <= 1.0
        assert prediction.model == "transformers/named-sentiment"
    assert backend.predict([]) == []


def test_generic_labels_follow_cardiffnlp_order(models: dict[str, Path]) -> None:
    backend = load_transformers_backend(settings_for(models["generic"], models["emotion"]))
    predictions = backend.predict(TEXTS)
    by_index = {"LABEL_0": "negative", "LABEL_1": "neutral", "LABEL_2": "positive"}
    for text, prediction in zip(TEXTS, predictions, strict=True):
        probs = reference(models["generic"], text)
        best = max(probs, key=probs.__getitem__)
        assert prediction.sentiment == Sentiment(by_index[best])
        assert prediction.confidence == pytest.approx(probs[best], abs=1e-4)


def test_mentions_and_links_are_normalised_before_the_model(models: dict[str, Path]) -> None:
    backend = load_transformers_backend(settings_for(models["named"], models["emotion"]))
    a, b = backend.predict(["@alice see https://a.example/x", "@user see http"])
    # The same tokens; two rows of one batch may round differently in the last float32 bit
    # (seen with torch's AMX kernels), so the confidences agree to 1e-6, not bit for bit.
    assert (a.sentiment, a.emotion, a.model) == (b.sentiment, b.emotion, b.model)
    assert a.confidence == pytest.approx(b.confidence, abs=1e-6)
    assert a.emotion_confidence == pytest.approx(b.emotion_confidence, abs=1e-6)


def test_missing_model_is_unavailable_with_a_clear_message(
    models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        load_transformers_backend(settings_for("nobody-org/no-such-model", models["emotion"]))
    message = str(caught.value)
    assert "SENTIMENT_MODEL='nobody-org/no-such-model'" in message
    assert "hf download nobody-org/no-such-model" in message

    with pytest.raises(BackendUnavailable, match="EMOTION_MODEL="):
        load_transformers_backend(settings_for(models["named"], tmp_path / "absent"))


def test_emotion_model_with_unmappable_labels_is_unavailable(models: dict[str, Path]) -> None:
    with pytest.raises(BackendUnavailable, match="labels we cannot map"):
        load_transformers_backend(settings_for(models["named"], models["generic"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_device_is_unavailable(models: dict[str, Path]) -> None:
    with pytest.raises(BackendUnavailable, match="MODEL_DEVICE=cuda"):
        load_transformers_backend(
            settings_for(models["named"], models["emotion"], model_device="cuda")
        )


def test_without_the_optional_extra_the_backend_is_unavailable(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(
        BackendUnavailable, match=r"pip install 'sentiment-platform\[transformers\]'"
    ):
        load_transformers_backend(settings_for(models["named"], models["emotion"]))


def test_the_analyzer_imports_without_torch_or_transformers() -> None:
    code = (
        "import sys; sys.modules['torch'] = sys.modules['transformers'] = None; "
        "import sentiment_platform.services.analysis.sentiment_analyzer"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
