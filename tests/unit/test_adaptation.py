"""Adaptation's parts (issue 30): the correction learns what the shipped probabilities miss
and nothing when there is nothing to learn, the folds are stratified partitions, and an
adapted model's files are refused when they do not fit the encoder serving them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sentiment_platform.services.analysis.adaptation import (
    Correction,
    adapted_name,
    read_adapted,
    write_adapted,
)
from sentiment_platform.services.analysis.onnx_classifier import ModelLoadError
from sentiment_platform.training.adapt_fit import (
    Rows,
    figures,
    fit_correction,
    predict,
    stratified_folds,
    training_rows,
)

LABELS = ["negative", "neutral", "positive"]
EMOTIONS = ["anger", "fear", "joy", "neutral", "sadness", "surprise"]
ENCODER = {"sentiment": LABELS, "emotion": EMOTIONS}


def shifted_rows(n: int, seed: int) -> Rows:
    """Rows whose shipped probabilities call every class-0 row class 1; a direction shared
    by ten of the 41 features (as the encoder's are correlated) tells them apart."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    features = rng.normal(size=(n, 41)).astype(np.float32)
    features[:, :10] += 2.0 * (labels == 0)[:, None]
    seen = np.where(labels == 0, 1, labels)
    probabilities = np.full((n, 3), 0.1, np.float32)
    probabilities[np.arange(n), seen] = 0.8
    return Rows(probabilities, features, labels, np.ones(n, np.float32))


def test_the_correction_learns_what_the_shipped_model_misses() -> None:
    train, test = shifted_rows(600, 0), shifted_rows(600, 1)
    before = figures(test.labels, predict(None, test))
    correction = fit_correction(training_rows(train, None, 3), 3)
    after = figures(test.labels, predict(correction, test))
    assert before.macro_recall < 67 and after.macro_recall > 95


def test_labels_that_agree_leave_the_model_as_it_was() -> None:
    rows = shifted_rows(600, 2)
    agreeing = Rows(rows.probabilities, rows.features, rows.probabilities.argmax(1), rows.weights)
    correction = fit_correction(training_rows(agreeing, None, 3), 3)
    assert (predict(correction, agreeing) == agreeing.labels).all()


def test_replay_weighs_as_much_as_the_labels_each_class_alike() -> None:
    labelled, replay = shifted_rows(90, 3), shifted_rows(900, 4)
    rows = training_rows(labelled, replay, 3)
    assert len(rows) == 990
    assert rows.weights[:90].sum() == pytest.approx(90) == rows.weights[90:].sum()
    for label in range(3):
        assert rows.weights[90:][replay.labels == label].sum() == pytest.approx(30)


def test_stratified_folds_partition_each_class_evenly() -> None:
    labels = np.array([0] * 50 + [1] * 23 + [2] * 7)
    folds = stratified_folds(labels, 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(80))
    for fold in folds:
        counts = np.bincount(labels[fold], minlength=3)
        assert counts[0] == 10 and counts[1] in (4, 5) and counts[2] in (1, 2)


def test_figures_are_macro_recall_and_accuracy_in_percent() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    found = figures(truth, np.array([0, 0, 0, 1, 1, 1, 2, 0]))
    assert found.macro_recall == pytest.approx(100 * (0.75 + 1 + 0.5) / 3, abs=0.01)
    assert found.accuracy == 75.0


def test_zero_correction_is_the_shipped_model() -> None:
    rows = shifted_rows(20, 5)
    corrected = Correction.zero(41, 3).apply(rows.probabilities, rows.features)
    assert np.allclose(corrected, rows.probabilities / rows.probabilities.sum(1, keepdims=True))


def _written(tmp_path: Path) -> Path:
    correction = Correction(np.ones((41, 3), np.float32), np.zeros(3, np.float32))
    manifest = {"name": "m-adapted-1", "task": "sentiment", "labels": ENCODER, "base": "e/v5"}
    write_adapted(tmp_path / "m", manifest, {"sentiment": correction})
    return tmp_path / "m"


def test_adapted_files_round_trip_and_refuse_another_encoder(tmp_path: Path) -> None:
    directory = _written(tmp_path)
    model = read_adapted(directory, "e/v5", ENCODER, 41)
    assert model.name == "m-adapted-1" and list(model.heads) == ["sentiment"]
    assert model.heads["sentiment"].weight.shape == (41, 3)
    written = json.loads((directory / "model.json").read_text())
    assert written["kind"] == "adapted" and written["tasks"] == ["sentiment"]
    with pytest.raises(ModelLoadError, match="adapted from 'e/v5', but the embedded model is now"):
        read_adapted(directory, "e/v6", ENCODER, 41)
    with pytest.raises(ModelLoadError, match=r"holds a \(41, 3\) sentiment weight"):
        read_adapted(directory, "e/v5", ENCODER, 1536)
    with pytest.raises(ModelLoadError, match="labels for sentiment"):
        read_adapted(directory, "e/v5", {"sentiment": LABELS[::-1]}, 41)
    (directory / "heads.npz").unlink()
    with pytest.raises(ModelLoadError, match="heads.npz cannot be read"):
        read_adapted(directory, "e/v5", ENCODER, 41)


def test_adapted_names_count_up_per_base() -> None:
    assert adapted_name("embedded/minilm-v5", set()) == "minilm-v5-adapted-1"
    taken = {"minilm-v5-adapted-1", "minilm-v5-adapted-7", "other-adapted-9"}
    assert adapted_name("embedded/minilm-v5", taken) == "minilm-v5-adapted-8"
