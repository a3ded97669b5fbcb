"""The arithmetic of `adapt`: a sentiment correction fitted on the frozen encoder's outputs,
and the stratified folds and figures it is judged by. numpy only, so `adapt` runs on a
plain install (no torch, no scikit-learn).

The correction (`adaptation.Correction`) is a residual on the shipped model's
log-probabilities, read from a few directions of the pooled features: the leading
principal components of the training rows, whitened. Few directions and weight decay keep
a thousand labels from fitting noise in 1,536 dimensions; with no evidence the residual
stays at zero, the shipped model. Measured on shifted sets (`benchmarks/trust.py`), 16
directions and decay 0.01 won over 64 or 256 directions, over a bias alone and over a new
head without the shipped logits.

Classes are weighted to count alike (labels and replayed rows separately, the replayed rows
weighing as much in all as the labels), so the fit aims at macro-recall, the figure it is
judged by, rather than at the commonest class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sentiment_platform.services.analysis.adaptation import Correction
from sentiment_platform.services.analysis.embedded_backend import softmax

COMPONENTS = 16  # feature directions the residual reads
WEIGHT_DECAY = 0.01  # on the residual's weights (the bias is free)
STEPS = 300  # full-batch Adam steps
LEARNING_RATE = 0.05
POWER_ITERATIONS = 4  # of the randomised SVD that finds the directions
SEED = 30
REPLAY_WEIGHT = 1.0  # the replayed rows' weight in all, as a multiple of the labels'


@dataclass(frozen=True, slots=True)
class Rows:
    """Encoded rows: the shipped model's probabilities, pooled features, class indices and
    each row's weight in the fit."""

    probabilities: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.size)

    def take(self, rows: np.ndarray) -> Rows:
        return Rows(
            self.probabilities[rows], self.features[rows], self.labels[rows], self.weights[rows]
        )

    def __add__(self, other: Rows) -> Rows:
        return Rows(
            np.concatenate([self.probabilities, other.probabilities]),
            np.concatenate([self.features, other.features]),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.weights, other.weights]),
        )


def balanced(labels: np.ndarray, classes: int, total: float) -> np.ndarray:
    """Weights that give each class present the same sum, `total` in all."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    present = np.count_nonzero(counts)
    if present == 0:
        return np.zeros(0, np.float32)
    per_class = np.divide(total / present, counts, out=np.zeros_like(counts), where=counts > 0)
    weights: np.ndarray = per_class[labels].astype(np.float32)
    return weights


def training_rows(
    labelled: Rows, replay: Rows | None, classes: int, replay_weight: float = REPLAY_WEIGHT
) -> Rows:
    """The labelled rows (and the replayed base rows, weighing as much in all), with
    class-balanced weights."""
    rows = Rows(
        labelled.probabilities,
        labelled.features,
        labelled.labels,
        balanced(labelled.labels, classes, float(len(labelled))),
    )
    if replay is None or len(replay) == 0:
        return rows
    weights = balanced(replay.labels, classes, replay_weight * len(labelled))
    return rows + Rows(replay.probabilities, replay.features, replay.labels, weights)


def directions(z: np.ndarray, k: int, seed: int = SEED) -> np.ndarray:
    """Features × k: the leading principal directions of the standardised rows `z`, scaled
    so the projected rows have unit variance (a randomised SVD: O(rows · features · k))."""
    k = max(1, min(k, z.shape[0] - 1, z.shape[1]))
    rng = np.random.default_rng(seed)
    basis = z @ rng.standard_normal((z.shape[1], k + 8)).astype(np.float32)
    for _ in range(POWER_ITERATIONS):
        basis, _ = np.linalg.qr(z @ (z.T @ basis))
    basis, _ = np.linalg.qr(basis)
    _, singular, vt = np.linalg.svd(basis.T @ z, full_matrices=False)
    scale = np.maximum(singular[:k], 1e-6) / np.sqrt(max(z.shape[0] - 1, 1))
    projection: np.ndarray = (vt[:k].T / scale).astype(np.float32)
    return projection


def fit_correction(
    rows: Rows,
    classes: int,
    components: int = COMPONENTS,
    weight_decay: float = WEIGHT_DECAY,
    steps: int = STEPS,
) -> Correction:
    """The residual that best predicts `rows`' labels from the shipped log-probabilities
    plus a few feature directions (weighted cross-entropy, weight decay on W)."""
    mean = rows.features.mean(axis=0)
    scale = rows.features.std(axis=0) + 1e-6
    z = ((rows.features - mean) / scale).astype(np.float32)
    projection = directions(z, components)
    x = z @ projection
    base = np.log(np.maximum(rows.probabilities, 1e-12)).astype(np.float32)
    target = np.eye(classes, dtype=np.float32)[rows.labels]
    share = (rows.weights / rows.weights.sum()).astype(np.float32)[:, None]
    weight = np.zeros((x.shape[1], classes), np.float32)
    bias = np.zeros(classes, np.float32)
    moments = [[np.zeros_like(weight), np.zeros_like(weight)], [np.zeros_like(bias)] * 2]
    for step in range(1, steps + 1):
        error = (softmax(base + x @ weight + bias) - target) * share
        gradients = (x.T @ error + weight_decay * weight, error.sum(axis=0))
        for parameter, gradient, moment in zip((weight, bias), gradients, moments, strict=True):
            moment[0] = 0.9 * moment[0] + 0.1 * gradient
            moment[1] = 0.999 * moment[1] + 0.001 * gradient * gradient
            first = moment[0] / (1 - 0.9**step)
            second = moment[1] / (1 - 0.999**step)
            parameter -= LEARNING_RATE * first / (np.sqrt(second) + 1e-8)
    # Folded back onto the raw features: (f - mean) / scale · P · W + b = f · W' + b'.
    full = (projection @ weight) / scale[:, None]
    return Correction(full.astype(np.float32), (bias - mean @ full).astype(np.float32))


def stratified_folds(labels: np.ndarray, k: int, seed: int = SEED) -> list[np.ndarray]:
    """`k` disjoint folds of row indices, each class dealt across them evenly."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        for position, row in enumerate(members):
            folds[(offset + position) % k].append(int(row))
        offset += members.size
    return [np.sort(np.array(fold, dtype=np.int64)) for fold in folds]


def predict(correction: Correction | None, rows: Rows) -> np.ndarray:
    """Class indices: the shipped model's, corrected when a correction is given."""
    probabilities = rows.probabilities
    if correction is not None:
        probabilities = correction.apply(probabilities, rows.features)
    return np.asarray(probabilities.argmax(axis=1))


def cross_validated(
    rows: Rows,
    judged: np.ndarray,
    replay: Rows | None,
    classes: int,
    folds: int,
    step: Callable[[int, int], None] = lambda done, total: None,
) -> np.ndarray:
    """The candidate's predictions for `rows[judged]` (the random labels), each made by a
    correction learnt without that row's stratified fold (every other label, and the
    replay, teach it)."""
    predicted = np.empty(judged.size, dtype=np.int64)
    for done, fold in enumerate(stratified_folds(rows.labels[judged], folds)):
        keep = np.ones(len(rows), dtype=bool)
        keep[judged[fold]] = False
        training = training_rows(rows.take(np.flatnonzero(keep)), replay, classes)
        predicted[fold] = predict(fit_correction(training, classes), rows.take(judged[fold]))
        step(done + 1, folds)
    return predicted


@dataclass(frozen=True, slots=True)
class Figures:
    """Percent, as `evaluate` and `/api/quality` print them."""

    macro_recall: float
    accuracy: float


def figures(labels: np.ndarray, predictions: np.ndarray) -> Figures:
    """Macro-recall (the mean recall over the classes that have labels) and accuracy."""
    recalls = [float(np.mean(predictions[labels == c] == c)) for c in np.unique(labels)]
    return Figures(
        round(100 * float(np.mean(recalls)), 2),
        round(100 * float(np.mean(predictions == labels)), 2),
    )
