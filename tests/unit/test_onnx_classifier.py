"""`OnnxClassifier`, the serving side of `model import`: it serves the directory the import
writes, and a directory that cannot serve (a file missing or corrupt, a manifest that does not
fit the graph) is a `ModelLoadError` naming the directory and the file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sentiment_platform.domain import Task
from sentiment_platform.services.analysis.backends import BackendUnavailable
from sentiment_platform.services.analysis.onnx_classifier import ModelLoadError, OnnxClassifier
from sentiment_platform.training.hf_import import ImportRequest, import_model
from sentiment_platform.training.hf_inputs import read_sample
from tests.support.hf_tiny import SENTIMENT_LABELS, build_tiny_classifier

SAMPLE = read_sample(None)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer roberta classifier imported (its int8 graph keeps the fp32 labels)."""
    root = tmp_path_factory.mktemp("onnx-classifier")
    source = build_tiny_classifier(root / "tiny", SENTIMENT_LABELS, layers=1, seed=0)
    request = ImportRequest(source=str(source), task=Task.SENTIMENT, models_dir=root / "models")
    return import_model(request).path


def _broken_copy(artifact: Path, tmp_path: Path, file: str, content: bytes | None) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(artifact, folder)
    if content is None:
        (folder / file).unlink()
    else:
        (folder / file).write_bytes(content)
    return folder


@pytest.mark.parametrize(
    ("file", "content", "words"),
    [
        ("model.onnx", None, "model.onnx is missing"),
        ("model.onnx", b"not a graph", "model.onnx cannot be loaded"),
        ("tokenizer.json", None, "tokenizer.json is missing"),
        ("tokenizer.json", b"{", "tokenizer.json cannot be read"),
        ("model.json", None, "model.json is missing"),
        ("model.json", b"[1, 2", "model.json cannot be read"),
        ("model.json", b'{"name": "x"}', "model.json lacks task, labels"),
    ],
)
def test_a_missing_or_corrupt_file_is_a_clear_load_error(
    artifact: Path, tmp_path: Path, file: str, content: bytes | None, words: str
) -> None:
    folder = _broken_copy(artifact, tmp_path, file, content)
    with pytest.raises(ModelLoadError) as caught:
        OnnxClassifier(folder)
    assert words in str(caught.value) and str(folder) in str(caught.value)
    assert isinstance(caught.value, BackendUnavailable)  # what a backend chain skips


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"format": 2}, "format 2"),
        ({"labels": ["negative", "positive"]}, "gives 3 logits but model.json names 2"),
        ({"labels": ["negative", "joy", "positive"]}, "'joy'"),
        ({"task": "topic"}, "'topic'"),
    ],
)
def test_a_manifest_that_does_not_fit_the_graph_is_a_clear_load_error(
    artifact: Path, tmp_path: Path, change: dict[str, object], words: str
) -> None:
    manifest = json.loads((artifact / "model.json").read_text()) | change
    folder = _broken_copy(artifact, tmp_path, "model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelLoadError, match="model.json|model.onnx") as caught:
        OnnxClassifier(folder)
    assert words in str(caught.value)


def test_the_classifier_keeps_the_input_order_and_truncates(artifact: Path) -> None:
    classifier = OnnxClassifier(artifact, threads=2, chunk_size=3)
    try:
        texts = [*SAMPLE[:9], "worried " * 500, ""]
        together = classifier.probabilities(texts)
        one_by_one = np.concatenate([classifier.probabilities([text]) for text in texts])
        assert classifier.predict([]) == []
    finally:
        classifier.close()
    assert together.shape == (len(texts), 3)
    # the same rows whichever way they are batched (up to int8's per-call scaling)
    assert (together.argmax(axis=1) == one_by_one.argmax(axis=1)).mean() >= 0.8


def test_serving_needs_no_torch(artifact: Path) -> None:
    """The classifier runs in a process where torch and transformers cannot be imported."""
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from pathlib import Path\n"
        "from sentiment_platform.services.analysis.onnx_classifier import OnnxClassifier\n"
        f"classifier = OnnxClassifier(Path({str(artifact)!r}))\n"
        "print(classifier.predict(['what a great day', 'this is terrible']))\n"
        "classifier.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Sentiment." in done.stdout
