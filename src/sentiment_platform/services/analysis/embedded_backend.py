"""The embedded backend: the offline model shipped inside the package.

One int8 ONNX encoder (MiniLM, cut to a few layers) gives sentiment logits and pooled
features in one pass; a linear emotion head on those features gives the emotion. It needs
only ONNX Runtime, tokenizers and numpy. The files are read through `importlib.resources`,
so it loads from an installed wheel as well as from the source tree. `training/` (`train`)
makes the artifact; `embedded_model/MODEL_CARD.md` describes it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Prediction, Sentiment
from sentiment_platform.services.analysis.backends import BackendUnavailable
from sentiment_platform.services.analysis.quantification import confusion_from_config

ARTIFACT_PACKAGE = "sentiment_platform"
ARTIFACT_DIR = "embedded_model"
CHUNK_SIZE = 24  # texts per ONNX call; sorted by length, so each chunk pads little


def pad(encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, zero-padded to the longest encoding (dynamic padding)."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return ids, mask


def length_sorted_chunks(encodings: Sequence[Any], size: int) -> list[np.ndarray]:
    """Row indices in chunks of `size`, shortest texts first, so each chunk pads little."""
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


class ProbabilityFix(Protocol):
    """A correction of a head's probabilities from the pooled features (an adapted model's
    `adaptation.Correction`)."""

    def apply(self, probabilities: np.ndarray, features: np.ndarray) -> np.ndarray: ...


class OnnxEncoder:
    """Tokenizer + ONNX graph: sentiment probabilities and pooled features for a batch of texts.

    Chunks run concurrently on `threads` threads of one session, each call single-threaded:
    ONNX Runtime releases the GIL, and whole chunks in parallel keep the cores busier than
    one chunk split across them. Longest chunks go first, so no core idles at the end of a
    batch.
    """

    def __init__(
        self, files: Traversable | Path, threads: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.config: dict[str, Any] = json.loads((files / "config.json").read_text("utf-8"))
        self.sentiment_labels: list[str] = self.config["sentiment_labels"]
        # Log-probability offsets calibrated by `train` for honest class shares (none: zeros).
        self.sentiment_bias = np.asarray(
            self.config.get("sentiment_bias") or [0.0] * len(self.sentiment_labels),
            dtype=np.float32,
        )
        self.tokenizer = Tokenizer.from_str((files / "tokenizer.json").read_text("utf-8"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.config["max_tokens"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            (files / "model.onnx").read_bytes(), options, providers=["CPUExecutionProvider"]
        )
        self.chunk_size = chunk_size
        self.threads = threads or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.threads, "onnx-chunk")

    def run(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(sentiment probabilities, features), one row per text in the given order."""
        encodings = self.tokenizer.encode_batch(list(texts))
        probs = np.empty((len(texts), len(self.sentiment_labels)), dtype=np.float32)
        features = np.empty((len(texts), self.config["feature_size"]), dtype=np.float32)

        def run_chunk(rows: np.ndarray) -> None:
            ids, mask = pad([encodings[i] for i in rows])
            logits, pooled = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            probs[rows] = softmax(logits + self.sentiment_bias)
            features[rows] = pooled

        size = min(self.chunk_size, -(-len(texts) // self.threads))  # small batches: all threads
        chunks = length_sorted_chunks(encodings, size)[::-1]  # longest first
        list(self.pool.map(run_chunk, chunks))  # re-raises a chunk's error here
        return probs, features


class EmbeddedBackend:
    """Sentiment and emotion from the shipped artifact, in one encoder pass per chunk."""

    def __init__(self, files: Traversable | Path, threads: int | None = None) -> None:
        self.encoder = OnnxEncoder(files, threads=threads)
        self.name: str = self.encoder.config["name"]
        head = np.load(io.BytesIO((files / "emotion_head.npz").read_bytes()))
        self.emotion_weight, self.emotion_bias = head["weight"], head["bias"]
        self.sentiments = [Sentiment(label) for label in self.encoder.sentiment_labels]
        self.emotions = [Emotion(label) for label in self.encoder.config["emotion_labels"]]

    @property
    def confusion(self) -> dict[Sentiment, dict[Sentiment, float]] | None:
        """P(predicted | true) estimated on held-out training tweets (None: not shipped).

        For `services.quantification.adjusted_shares`: the shares of a count of this
        model's labels, with its known confusion undone.
        """
        return confusion_from_config(self.encoder.config)

    def close(self) -> None:
        """Stop the chunk threads (the analyzer calls this when it closes)."""
        self.encoder.pool.shutdown(wait=True)

    def emotion_probabilities(self, features: np.ndarray) -> np.ndarray:
        return softmax(features @ self.emotion_weight + self.emotion_bias)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not texts:
            return []
        sentiments, emotions = self.labels(*self.encoder.run(texts))
        return [
            Prediction(
                sentiment=s, confidence=sp, emotion=e, emotion_confidence=ep, model=self.name
            )
            for (s, sp), (e, ep) in zip(sentiments, emotions, strict=True)
        ]

    def labels(
        self, sentiment: np.ndarray, features: np.ndarray, emotion_fix: ProbabilityFix | None = None
    ) -> tuple[list[tuple[Sentiment, float]], list[tuple[Emotion, float]]]:
        """Each text's sentiment and emotion with their probabilities, from the encoder's
        sentiment probabilities (an adapted model's, corrected) and pooled features;
        `emotion_fix` (an adapted model's `Correction`) corrects the emotion head's."""
        emotion = self.emotion_probabilities(features)
        if emotion_fix is not None:
            emotion = emotion_fix.apply(emotion, features)
        s_best, e_best = sentiment.argmax(axis=1), emotion.argmax(axis=1)
        return (
            [(self.sentiments[s], float(sentiment[row, s])) for row, s in enumerate(s_best)],
            [(self.emotions[e], float(emotion[row, e])) for row, e in enumerate(e_best)],
        )


def artifact_files() -> Traversable:
    """The artifact directory inside the installed package."""
    return resources.files(ARTIFACT_PACKAGE) / ARTIFACT_DIR


def load_embedded_backend(settings: Settings, threads: int | None = None) -> EmbeddedBackend:
    """The shipped model, or BackendUnavailable saying which file is missing and how to make it.

    `threads` overrides `EMBEDDED_THREADS` (benchmarks compare thread counts).
    """
    files = artifact_files()
    for name in ("model.onnx", "tokenizer.json", "config.json", "emotion_head.npz"):
        if not (files / name).is_file():
            raise BackendUnavailable(
                f"embedded model file {ARTIFACT_DIR}/{name} is missing from the package; "
                "build it with `sentiment-platform train` (see embedded_model/MODEL_CARD.md)"
            )
    try:
        return EmbeddedBackend(files, threads=threads or settings.embedded_threads)
    except Exception as exc:  # a corrupt or mismatched artifact must not crash the chain
        raise BackendUnavailable(f"embedded model failed to load: {exc}") from exc
