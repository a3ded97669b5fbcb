"""An adapted model, served: the shipped encoder with a sentiment correction learnt from the
user's labels (`sentiment-platform adapt`, `training/adapt.py`).

The embedded model is one int8 ONNX graph with no trainable weights shipped beside it, so
adaptation keeps the encoder frozen and learns a residual on its outputs: the corrected
sentiment logits are `log p + features · W + b`, where `p` are the shipped model's
(calibrated) probabilities. W and b start at zero and are pulled towards zero while they
learn, so with no evidence the adapted model is the shipped one. One encoder pass still
gives both tasks; the correction costs one small matrix product a batch.

A model directory (`MODELS_DIR/<name>/`) holds `model.json` (`name`, `kind` "adapted",
`task`, `labels`, `base`: the embedded model whose features W reads, `format`, and what
`adapt` measured) and `heads.npz` (`sentiment_weight` features × classes, `sentiment_bias`).
Heads learnt on another encoder's features mean nothing on this one: loading refuses them
(`ModelLoadError` naming the base), and `adapt` learns new ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_platform.services.analysis.embedded_backend import softmax
from sentiment_platform.services.analysis.onnx_classifier import ModelLoadError

ADAPTED = "adapted"  # the registry kind of an adapted model
ADAPTED_FORMAT = 1
MANIFEST = "model.json"
HEADS = "heads.npz"


@dataclass(frozen=True, slots=True)
class Correction:
    """A residual on a model's log-probabilities from the encoder's pooled features."""

    weight: np.ndarray  # features × classes
    bias: np.ndarray  # classes

    def apply(self, probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The corrected probabilities (one row per text, classes in the base's order)."""
        logits = np.log(np.maximum(probabilities, 1e-12)) + features @ self.weight + self.bias
        return softmax(logits.astype(np.float32))

    @classmethod
    def zero(cls, features: int, classes: int) -> Correction:
        return cls(np.zeros((features, classes), np.float32), np.zeros(classes, np.float32))


@dataclass(frozen=True, slots=True)
class AdaptedModel:
    """What an adapted model's directory holds, checked against the encoder it runs on."""

    name: str
    base: str
    labels: list[str]
    sentiment: Correction
    manifest: dict[str, Any]


def read_adapted(directory: Path, base: str, labels: list[str], feature_size: int) -> AdaptedModel:
    """The model in `directory`, or ModelLoadError saying which file is wrong and why.
    `base`, `labels` and `feature_size` are the serving encoder's: heads learnt on another
    encoder, or for other classes, are refused."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"model {directory}: {MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {directory}: {MANIFEST} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ADAPTED_FORMAT:
        raise ModelLoadError(
            f"model {directory}: {MANIFEST} is not an adapted model of format {ADAPTED_FORMAT}"
        )
    if manifest.get("base") != base:
        raise ModelLoadError(
            f"model {directory}: adapted from {manifest.get('base')!r}, but the embedded model "
            f"is now {base!r}; run `sentiment-platform adapt` again"
        )
    if manifest.get("labels") != labels:
        raise ModelLoadError(
            f"model {directory}: {MANIFEST} labels {manifest.get('labels')} are not the "
            f"embedded model's {labels}"
        )
    try:
        with np.load(directory / HEADS) as heads:
            weight = np.asarray(heads["sentiment_weight"], dtype=np.float32)
            bias = np.asarray(heads["sentiment_bias"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"model {directory}: {HEADS} cannot be read: {exc}") from None
    if weight.shape != (feature_size, len(labels)) or bias.shape != (len(labels),):
        raise ModelLoadError(
            f"model {directory}: {HEADS} holds a {weight.shape} weight and a {bias.shape} "
            f"bias; the encoder needs ({feature_size}, {len(labels)}) and ({len(labels)},)"
        )
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise ModelLoadError(f"model {directory}: {HEADS} holds values that are not finite")
    return AdaptedModel(str(manifest["name"]), base, labels, Correction(weight, bias), manifest)


def write_adapted(
    directory: Path, manifest: dict[str, Any], sentiment: Correction
) -> dict[str, Any]:
    """Write the model's two files (the directory must not exist yet); returns the manifest
    as written (with `kind`, `format` and the heads' `size_bytes`)."""
    directory.mkdir(parents=True)
    np.savez(directory / HEADS, sentiment_weight=sentiment.weight, sentiment_bias=sentiment.bias)
    size = (directory / HEADS).stat().st_size
    manifest = {**manifest, "size_bytes": size, "format": ADAPTED_FORMAT, "kind": ADAPTED}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest


def adapted_name(base: str, taken: set[str]) -> str:
    """The next free version name for a model adapted from `base`: `minilm-v5-adapted-3`
    after `-adapted-1` and `-2` (names already registered or on disk are `taken`)."""
    stem = re.sub(r"[^a-z0-9.-]+", "-", base.rsplit("/", 1)[-1].lower()).strip("-") or "model"
    pattern = re.compile(rf"^{re.escape(stem)}-adapted-(\d+)$")
    versions = [int(m.group(1)) for name in taken if (m := pattern.match(name))]
    return f"{stem}-adapted-{max(versions, default=0) + 1}"
