"""The transformers backend: any Hugging Face sequence classifier, from the local cache by default.

torch and transformers are an optional extra, imported only when this backend loads, so the
package (and the embedded/LLM paths) work without them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Prediction, Sentiment, to_emotion, to_sentiment
from sentiment_platform.services.analysis.backends import BackendUnavailable
from sentiment_platform.services.analysis.language import UNDETERMINED
from sentiment_platform.services.analysis.routing import ENGLISH

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MAX_TOKENS = 512
_GENERIC_LABEL = re.compile(r"^label_(\d+)$", re.IGNORECASE)
# cardiffnlp's twitter-roberta sentiment models publish LABEL_0..2 in this order.
CARDIFF_SENTIMENT_ORDER = (Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE)


def preprocess(text: str) -> str:
    """cardiffnlp's tweet normalisation (their models were trained on it): @mentions, links."""
    words = []
    for word in text.split(" "):
        if word.startswith("@") and len(word) > 1:
            word = "@user"
        elif word.startswith("http"):
            word = "http"
        words.append(word)
    return " ".join(words)


def sentiment_classes(id2label: Mapping[int, str]) -> list[Sentiment]:
    """Our sentiment for each model output; generic LABEL_i names follow cardiffnlp's order."""
    names = [id2label[i] for i in range(len(id2label))]
    generic = [_GENERIC_LABEL.match(name) for name in names]
    if not all(generic):
        return [to_sentiment(name) for name in names]
    indices = [int(match.group(1)) for match in generic if match]
    if sorted(indices) != list(range(len(CARDIFF_SENTIMENT_ORDER))):
        raise ValueError(f"generic labels {names} are not a 3-way negative/neutral/positive")
    return [CARDIFF_SENTIMENT_ORDER[index] for index in indices]


def emotion_classes(id2label: Mapping[int, str]) -> list[Emotion]:
    """Our emotion for each model output (j-hartmann's disgust -> anger, ...)."""
    return [to_emotion(id2label[i]) for i in range(len(id2label))]


@dataclass
class _Head:
    """One loaded classifier plus the matrix that sums its outputs onto our labels."""

    tokenizer: Any
    model: Any
    labels: list[StrEnum]
    projection: torch.Tensor  # (model outputs, our labels) one-hot
    max_length: int

    def probabilities(self, texts: list[str], device: str) -> torch.Tensor:
        """Per-text probabilities over `labels`, on the CPU; padded to this chunk's longest."""
        import torch

        encoded = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        probabilities: torch.Tensor = logits.float().softmax(dim=-1).cpu() @ self.projection
        return probabilities


def _load_head(
    model_id: str,
    setting: str,
    classes_of: Callable[[Mapping[int, str]], Sequence[StrEnum]],
    targets: Sequence[StrEnum],
    settings: Settings,
) -> _Head:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local_only = settings.model_local_files_only
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=local_only)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_id, local_files_only=local_only
        )
    except (OSError, ValueError) as exc:
        where = "the local Hugging Face cache" if local_only else "the hub or on disk"
        raise BackendUnavailable(
            f"{setting}={model_id!r} is not in {where} ({type(exc).__name__}); fetch it once "
            f"with `hf download {model_id}`, set {setting} to a local directory, "
            "or set MODEL_LOCAL_FILES_ONLY=false to download at startup"
        ) from exc
    try:
        classes = list(classes_of(model.config.id2label))
    except (ValueError, KeyError) as exc:
        raise BackendUnavailable(f"{setting}={model_id!r} has labels we cannot map: {exc}") from exc
    labels = [label for label in targets if label in classes]
    projection = torch.zeros(len(classes), len(labels))
    for row, label in enumerate(classes):
        projection[row, labels.index(label)] = 1.0
    model.to(settings.model_device).eval()
    max_length = min(int(tokenizer.model_max_length), MAX_TOKENS)
    return _Head(tokenizer, model, labels, projection, max_length)


class TransformersBackend:
    """Sentiment and emotion from two Hugging Face classifiers, in length-sorted chunks."""

    def __init__(
        self, name: str, sentiment: _Head, emotion: _Head, device: str, batch_size: int
    ) -> None:
        self.name = name
        self._sentiment = sentiment
        self._emotion = emotion
        self._device = device
        self._batch_size = batch_size
        # One batch at a time: torch already spreads one forward pass over the cores.
        self._lock = threading.Lock()

    def reader(self, language: str | None) -> TransformersBackend | None:
        """The default models (cardiffnlp's) read English: posts in another detected
        language are not theirs to label (`routing`)."""
        return self if language in (None, UNDETERMINED, ENGLISH) else None

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in input order; similar lengths share a chunk to pad less."""
        cleaned = [preprocess(text) for text in texts]
        order = sorted(range(len(cleaned)), key=lambda i: len(cleaned[i]))
        by_index: dict[int, Prediction] = {}
        with self._lock:
            for start in range(0, len(order), self._batch_size):
                chunk = order[start : start + self._batch_size]
                chunk_texts = [cleaned[i] for i in chunk]
                sent = self._sentiment.probabilities(chunk_texts, self._device)
                emo = self._emotion.probabilities(chunk_texts, self._device)
                sent_conf, sent_idx = sent.max(dim=-1)
                emo_conf, emo_idx = emo.max(dim=-1)
                for row, i in enumerate(chunk):
                    by_index[i] = Prediction(
                        sentiment=Sentiment(self._sentiment.labels[int(sent_idx[row])]),
                        confidence=float(sent_conf[row]),
                        emotion=Emotion(self._emotion.labels[int(emo_idx[row])]),
                        emotion_confidence=float(emo_conf[row]),
                        model=self.name,
                    )
        return [by_index[i] for i in range(len(cleaned))]


def load_transformers_backend(settings: Settings) -> TransformersBackend:
    """Load both classifiers; anything missing (extra, weights, CUDA) is `BackendUnavailable`."""
    try:
        import torch
        import transformers  # noqa: F401  (probe the optional extra before loading anything)
    except ImportError as exc:
        raise BackendUnavailable(
            "torch/transformers are not installed; "
            "install them with `pip install 'sentiment-platform[transformers]'`"
        ) from exc
    if settings.model_device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("MODEL_DEVICE=cuda but torch sees no CUDA device; set it to cpu")
    sentiment = _load_head(
        settings.sentiment_model, "SENTIMENT_MODEL", sentiment_classes, list(Sentiment), settings
    )
    emotion = _load_head(
        settings.emotion_model, "EMOTION_MODEL", emotion_classes, list(Emotion), settings
    )
    name = f"transformers/{Path(settings.sentiment_model.rstrip('/')).name}"
    logger.info(
        "transformers backend loaded",
        extra={
            "event": "analyzer.transformers_loaded",
            "sentiment_model": settings.sentiment_model,
            "emotion_model": settings.emotion_model,
            "device": settings.model_device,
        },
    )
    return TransformersBackend(
        name, sentiment, emotion, settings.model_device, settings.model_batch_size
    )
