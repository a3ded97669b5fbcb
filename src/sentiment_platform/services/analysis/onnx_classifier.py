"""An imported model, served: the int8 ONNX graph that `model import` writes, and its tokenizer.

No torch: ONNX Runtime, tokenizers and numpy, as the embedded backend, batched the same way
(length-sorted chunks on threads, each call single-threaded). A model directory
(`MODELS_DIR/<name>/`) holds:

- `model.onnx`: inputs `input_ids` and `attention_mask` (`token_type_ids` too if the graph
  declares it: fed as zeros, one text per row), output `logits`;
- `tokenizer.json`: the model's fast tokenizer;
- `model.json`: `name`, `task`, `labels` (the platform's label of each logit, in order; two
  logits may share one, as disgust and anger both mean anger), `source`, `architecture`,
  `max_length`, `languages`, `agreement`, `sample_size`, `size_bytes`, `posts_per_s`,
  `imported_at`, `format`.

A file that is missing or cannot be read is a `ModelLoadError` naming the directory and the
file, so whoever serves the model can report it as down and keep the previous one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_platform.domain import Emotion, Sentiment, Task
from sentiment_platform.services.analysis.backends import BackendUnavailable
from sentiment_platform.services.analysis.embedded_backend import (
    CHUNK_SIZE,
    length_sorted_chunks,
    pad,
    softmax,
)
from sentiment_platform.services.analysis.transformers_backend import preprocess

ARTIFACT_FORMAT = 1
MANIFEST = "model.json"
GRAPH = "model.onnx"
TOKENIZER = "tokenizer.json"
MODEL_FILES = (GRAPH, TOKENIZER, MANIFEST)
MANIFEST_FIELDS = (
    "name",
    "task",
    "labels",
    "source",
    "architecture",
    "max_length",
    "languages",
    "agreement",
    "sample_size",
    "size_bytes",
    "posts_per_s",
    "imported_at",
    "format",
)
GRAPH_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})


class ModelLoadError(BackendUnavailable):
    """An imported model cannot serve: a file of its directory is missing or corrupt."""


def label_type(task: Task) -> type[StrEnum]:
    """The platform's labels for a task."""
    return Sentiment if task is Task.SENTIMENT else Emotion


def read_json_manifest(directory: Path) -> Any:
    """`model.json` parsed (of any model kind), or ModelLoadError saying why it cannot be."""
    try:
        return json.loads((directory / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"model {directory}: {MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {directory}: {MANIFEST} cannot be read: {exc}") from None


def read_manifest(directory: Path) -> dict[str, Any]:
    """`model.json`, checked: every field there, a known format and task, the task's labels."""
    manifest = read_json_manifest(directory)
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"model {directory}: {MANIFEST} is not a JSON object")
    missing = [field for field in MANIFEST_FIELDS if field not in manifest]
    if missing:
        raise ModelLoadError(f"model {directory}: {MANIFEST} lacks {', '.join(missing)}")
    if manifest["format"] != ARTIFACT_FORMAT:
        raise ModelLoadError(
            f"model {directory}: {MANIFEST} has format {manifest['format']!r}; "
            f"this version reads format {ARTIFACT_FORMAT}"
        )
    try:
        labels_of = label_type(Task(manifest["task"]))
        for label in manifest["labels"]:
            labels_of(label)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"model {directory}: {MANIFEST}: {exc}") from None
    return manifest


class OnnxClassifier:
    """One imported classifier: texts in, the platform's labels with their probabilities out.

    Logits that map onto the same platform label have their probabilities summed before the
    argmax, as the transformers backend does. Texts get the same tweet normalisation as in
    the transformers backend (mentions and links), which the import's agreement check also
    applies to the fp32 original.
    """

    def __init__(
        self, directory: Path, threads: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        self.name: str = self.manifest["name"]
        self.task = Task(self.manifest["task"])
        labels_of = label_type(self.task)
        outputs = [labels_of(label) for label in self.manifest["labels"]]
        self.classes: list[StrEnum] = list(dict.fromkeys(outputs))
        self.projection = np.zeros((len(outputs), len(self.classes)), dtype=np.float32)
        for row, label in enumerate(outputs):
            self.projection[row, self.classes.index(label)] = 1.0
        for name in (GRAPH, TOKENIZER):
            if not (self.directory / name).is_file():
                raise ModelLoadError(f"model {self.directory}: {name} is missing")
        try:
            self.tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise ModelLoadError(
                f"model {self.directory}: {TOKENIZER} cannot be read: {exc}"
            ) from exc
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(self.manifest["max_length"]))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.directory / GRAPH), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime's load errors share no useful base class
            raise ModelLoadError(
                f"model {self.directory}: {GRAPH} cannot be loaded: {exc}"
            ) from exc
        self.inputs = [node.name for node in self.session.get_inputs()]
        self._check_graph(len(outputs))
        self.chunk_size = chunk_size
        self.threads = threads or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.threads, "onnx-classifier")

    def _check_graph(self, n_logits: int) -> None:
        unknown = set(self.inputs) - GRAPH_INPUTS
        if unknown or not {"input_ids", "attention_mask"} <= set(self.inputs):
            raise ModelLoadError(
                f"model {self.directory}: {GRAPH} takes inputs {self.inputs}; expected "
                "input_ids and attention_mask (and optionally token_type_ids)"
            )
        outputs = {node.name: node.shape for node in self.session.get_outputs()}
        if "logits" not in outputs:
            raise ModelLoadError(f"model {self.directory}: {GRAPH} has no `logits` output")
        width = outputs["logits"][-1]
        if isinstance(width, int) and width != n_logits:
            raise ModelLoadError(
                f"model {self.directory}: {GRAPH} gives {width} logits but {MANIFEST} "
                f"names {n_logits} labels"
            )

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order: the probability of each of `classes`."""
        encodings = self.tokenizer.encode_batch([preprocess(text) for text in texts])
        probabilities = np.empty((len(texts), len(self.classes)), dtype=np.float32)
        if not texts:
            return probabilities

        def run_chunk(rows: np.ndarray) -> None:
            ids, mask = pad([encodings[i] for i in rows])
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            (logits,) = self.session.run(["logits"], feed)
            probabilities[rows] = softmax(logits) @ self.projection

        size = min(self.chunk_size, -(-len(texts) // self.threads))  # small batches: all threads
        chunks = length_sorted_chunks(encodings, size)[::-1]  # longest first
        list(self.pool.map(run_chunk, chunks))  # re-raises a chunk's error here
        return probabilities

    def predict(self, texts: Sequence[str]) -> list[tuple[StrEnum, float]]:
        """The most probable label of each text, with its probability."""
        probabilities = self.probabilities(texts)
        best = probabilities.argmax(axis=1)
        return [
            (self.classes[index], float(probabilities[row, index]))
            for row, index in enumerate(best)
        ]

    def close(self) -> None:
        """Stop the chunk threads."""
        self.pool.shutdown(wait=True)
