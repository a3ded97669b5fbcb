"""An adapted model, served: the shipped encoder with corrections learnt from the user's
labels (`sentiment-platform adapt`, `training/adapt.py`).

The embedded model is one int8 ONNX graph with no trainable weights shipped beside it, so
adaptation keeps the encoder frozen and learns a residual on its outputs: a task's corrected
logits are `log p + features · W + b`, where `p` are the shipped model's probabilities for
that task (sentiment: calibrated; emotion: its linear head's). W and b start at zero and are
pulled towards zero while they learn, so with no evidence the adapted model is the shipped
one. One encoder pass still gives both tasks; a correction costs one small matrix product.

A model directory (`MODELS_DIR/<name>/`) holds `model.json` (`name`, `kind` "adapted",
`tasks` it serves (sentiment, and emotion when its correction won), `labels` per task,
`base`: the embedded model whose features W reads, `format`, and what `adapt` measured) and
`heads.npz` (`<task>_weight` features × classes and `<task>_bias` for each task). Heads
learnt on another encoder's features mean nothing on this one: loading refuses them
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
from sentiment_platform.services.analysis.onnx_classifier import (
    MANIFEST,
    ModelLoadError,
    read_json_manifest,
)

ADAPTED = "adapted"  # the registry kind of an adapted model
ADAPTED_FORMAT = 1
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
    heads: dict[str, Correction]  # task → its correction
    manifest: dict[str, Any]


def read_adapted(
    directory: Path, base: str, labels: dict[str, list[str]], feature_size: int
) -> AdaptedModel:
    """The model in `directory`, or ModelLoadError saying which file is wrong and why.
    `base`, `labels` (per task) and `feature_size` are the serving encoder's: heads learnt
    on another encoder, or for other classes, are refused."""
    manifest = read_json_manifest(directory)
    if not isinstance(manifest, dict) or manifest.get("format") != ADAPTED_FORMAT:
        raise ModelLoadError(
            f"model {directory}: {MANIFEST} is not an adapted model of format {ADAPTED_FORMAT}"
        )
    if manifest.get("base") != base:
        raise ModelLoadError(
            f"model {directory}: adapted from {manifest.get('base')!r}, but the embedded model "
            f"is now {base!r}; run `sentiment-platform adapt` again"
        )
    tasks, named = manifest.get("tasks"), manifest.get("labels")
    if not isinstance(tasks, list) or not tasks or not isinstance(named, dict):
        raise ModelLoadError(f"model {directory}: {MANIFEST} names no tasks and their labels")
    heads: dict[str, Correction] = {}
    for task in tasks:
        if task not in labels or named.get(task) != labels[task]:
            raise ModelLoadError(
                f"model {directory}: {MANIFEST} labels for {task} {named.get(task)} are not "
                f"the embedded model's {labels.get(task)}"
            )
        heads[task] = _head(directory, task, feature_size, len(labels[task]))
    return AdaptedModel(str(manifest["name"]), base, heads, manifest)


def _head(directory: Path, task: str, feature_size: int, classes: int) -> Correction:
    try:
        with np.load(directory / HEADS) as heads:
            weight = np.asarray(heads[f"{task}_weight"], dtype=np.float32)
            bias = np.asarray(heads[f"{task}_bias"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"model {directory}: {HEADS} cannot be read: {exc}") from None
    if weight.shape != (feature_size, classes) or bias.shape != (classes,):
        raise ModelLoadError(
            f"model {directory}: {HEADS} holds a {weight.shape} {task} weight and a "
            f"{bias.shape} bias; the encoder needs ({feature_size}, {classes}) and ({classes},)"
        )
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise ModelLoadError(f"model {directory}: {HEADS} holds values that are not finite")
    return Correction(weight, bias)


def write_adapted(
    directory: Path, manifest: dict[str, Any], heads: dict[str, Correction]
) -> dict[str, Any]:
    """Write the model's two files (the directory must not exist yet); returns the manifest
    as written (with `kind`, `format`, `tasks` and the heads' `size_bytes`)."""
    directory.mkdir(parents=True)
    arrays = {f"{task}_{part}": getattr(head, part) for task, head in heads.items()
              for part in ("weight", "bias")}  # fmt: skip
    np.savez(directory / HEADS, **arrays)
    size = (directory / HEADS).stat().st_size
    manifest = {**manifest, "size_bytes": size, "format": ADAPTED_FORMAT, "kind": ADAPTED}
    manifest["tasks"] = list(heads)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest


def adapted_name(base: str, taken: set[str]) -> str:
    """The next free version name for a model adapted from `base`: `minilm-v5-adapted-3`
    after `-adapted-1` and `-2` (names already registered or on disk are `taken`)."""
    stem = re.sub(r"[^a-z0-9.-]+", "-", base.rsplit("/", 1)[-1].lower()).strip("-") or "model"
    pattern = re.compile(rf"^{re.escape(stem)}-adapted-(\d+)$")
    versions = [int(m.group(1)) for name in taken if (m := pattern.match(name))]
    return f"{stem}-adapted-{max(versions, default=0) + 1}"
