"""`model import`: a Hugging Face sequence classifier, as an int8 ONNX model in MODELS_DIR.

The source is loaded with transformers' own loading code, checked (a sequence classifier
with its head, a tokenizer with a vocabulary, labels the platform knows), converted
(`hf_convert`), and kept only if the int8 graph, served the way it will be served
(`OnnxClassifier`), picks the same label as the fp32 original on at least `MIN_AGREEMENT`
of a sample. The model directory is built beside its final place and renamed into it, so
`MODELS_DIR` never holds half a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentiment_platform.domain import Task
from sentiment_platform.services.analysis.onnx_classifier import (
    ARTIFACT_FORMAT,
    GRAPH,
    MANIFEST,
    TOKENIZER,
    OnnxClassifier,
)
from sentiment_platform.services.analysis.transformers_backend import MAX_TOKENS, preprocess
from sentiment_platform.training.hf_convert import (
    FUSED,
    convert,
    quantize,
    reference_probabilities,
)
from sentiment_platform.training.hf_inputs import (
    ModelImportError,
    check_name,
    default_name,
    map_labels,
    read_sample,
)

logger = logging.getLogger(__name__)

MIN_AGREEMENT = 0.97
ROBERTA_POSITIONS = ("roberta", "xlm-roberta", "camembert")
SPEED_BATCH = 32
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spm.model",
    "tokenizer.model",
)


@dataclass(frozen=True)
class ImportRequest:
    """What `model import` was asked for (already parsed: see `hf_inputs`)."""

    source: str
    task: Task
    models_dir: Path
    name: str | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    max_length: int | None = None
    languages: list[str] = field(default_factory=lambda: ["en"])
    sample: Path | None = None
    force: bool = False
    local_files_only: bool = True


@dataclass(frozen=True)
class ImportResult:
    """Where the model went and its `model.json`; `fused` names the fused operators."""

    path: Path
    manifest: dict[str, Any]
    fused: dict[str, int] | None


def load_source(source: str, local_only: bool) -> tuple[Any, Any, Any]:
    """(config, tokenizer, model) through transformers' Auto classes, or a ModelImportError
    that says what is wrong with the source."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    where = "on disk or in the local Hugging Face cache" if local_only else "on disk or the hub"
    if source.startswith(("/", "./", "../", "~")):
        if not Path(source).expanduser().is_dir():
            raise ModelImportError(f"{source!r}: no such directory")
        source = str(Path(source).expanduser())
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        on_hub = local_only and not Path(source).is_dir()
        hint = " (set MODEL_LOCAL_FILES_ONLY=false to download it)" if on_hub else ""
        raise ModelImportError(f"{source!r}: no model config.json {where}{hint}: {exc}") from None
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelImportError(
            f"{source!r} is not a sequence classifier: it was saved as {', '.join(architectures)}"
            ", with no classification head; import a model fine-tuned for classification "
            "(saved with AutoModelForSequenceClassification)"
        )
    tokenizer = _load_tokenizer(source, local_only, where)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source,
            local_files_only=local_only,
            output_loading_info=True,
            attn_implementation="eager",
            dtype=torch.float32,  # float32 to compare with, whatever the checkpoint stores
        )
    except (OSError, ValueError) as exc:
        raise ModelImportError(
            f"{source!r}: cannot load it as a sequence classifier: {exc}"
        ) from None
    if info.get("missing_keys"):
        missing = ", ".join(sorted(info["missing_keys"])[:4])
        raise ModelImportError(
            f"{source!r} is not a complete sequence classifier: its checkpoint lacks {missing}"
            " (a bare encoder has no classification head)"
        )
    return config, tokenizer, model.eval()


def _load_tokenizer(source: str, local_only: bool, where: str) -> Any:
    from transformers import AutoTokenizer

    local = Path(source)
    if local.is_dir() and not any((local / name).is_file() for name in VOCABULARY_FILES):
        raise ModelImportError(
            f"{source!r} has no tokenizer (none of {', '.join(VOCABULARY_FILES)}); save the "
            "model's tokenizer beside it with tokenizer.save_pretrained(...)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelImportError(f"{source!r}: no usable tokenizer {where}: {exc}") from None
    # A checkpoint without tokenizer files loads as an empty tokenizer: specials only.
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise ModelImportError(f"{source!r} has no tokenizer vocabulary {where}")
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "backend_tokenizer"):
        raise ModelImportError(
            f"{source!r}: its tokenizer has no fast (tokenizer.json) form, which serving needs"
        )
    return tokenizer


def model_max_length(config: Any, tokenizer: Any, asked: int | None) -> int:
    """Tokens a text is cut to: what the tokenizer allows, at most the transformers
    backend's 512; `asked` (--max-length) may lower it."""
    limit = int(tokenizer.model_max_length)
    if limit > 100_000:  # unset in the tokenizer: the position table's size
        positions = int(getattr(config, "max_position_embeddings", MAX_TOKENS))
        pad: int | None = getattr(config, "pad_token_id", None)
        if config.model_type in ROBERTA_POSITIONS and pad is not None:
            positions -= pad + 1  # RoBERTa's positions start after the padding id
        limit = positions
    limit = min(limit, MAX_TOKENS)
    if asked is None:
        return limit
    if not 2 <= asked <= limit:
        raise ModelImportError(f"--max-length {asked}: this model takes 2 to {limit} tokens")
    return asked


def import_model(request: ImportRequest) -> ImportResult:
    """Convert, check and keep `request.source` as `MODELS_DIR/<name>/` (see module doc)."""
    name = check_name(request.name) if request.name else default_name(request.source)
    target = request.models_dir / name
    if target.exists() and not request.force:
        raise ModelImportError(
            f"a model named {name!r} is already in {request.models_dir}; "
            "choose another --name, or --force to replace it"
        )
    texts = read_sample(request.sample)
    config, tokenizer, model = load_source(request.source, request.local_files_only)
    labels = map_labels(config.id2label, request.task, request.label_map)
    max_length = model_max_length(config, tokenizer, request.max_length)
    request.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.importing-", dir=request.models_dir))
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide it from workers run as other users
    try:
        tokenizer.backend_tokenizer.save(str(staging / TOKENIZER))
        manifest: dict[str, Any] = {
            "name": name,
            "task": request.task.value,
            "labels": labels,
            "source": request.source,
            "architecture": config.model_type,
            "max_length": max_length,
            "languages": request.languages,
            "agreement": None,
            "sample_size": len(texts),
            "size_bytes": None,
            "posts_per_s": None,
            "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "format": ARTIFACT_FORMAT,
        }
        with tempfile.TemporaryDirectory(prefix="model-import-") as work:
            fused = convert(model, tokenizer, Path(work), staging / GRAPH)
            manifest = _measured(staging, manifest, model, tokenizer, texts, max_length)
            if manifest["agreement"] < MIN_AGREEMENT:  # saturated signed weights? (hf_convert)
                manifest = _unsigned_if_closer(
                    Path(work), staging, manifest, model, tokenizer, texts
                )
        if manifest["agreement"] < MIN_AGREEMENT and not request.force:
            raise ModelImportError(
                f"the int8 graph agrees with the fp32 original on only "
                f"{manifest['agreement']:.1%} of {len(texts)} sample texts (at least "
                f"{MIN_AGREEMENT:.0%} is needed); nothing was kept. --force keeps it anyway"
            )
        _write_manifest(staging, manifest)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "model imported",
        extra={"event": "model_import.done", "model": name, "path": str(target)},
    )
    return ImportResult(target, manifest, fused)


def _measured(
    staging: Path,
    manifest: dict[str, Any],
    model: Any,
    tokenizer: Any,
    texts: list[str],
    max_length: int,
) -> dict[str, Any]:
    """The manifest with the staged graph's size, agreement and speed (written first, since
    the classifier that measures reads it)."""
    size = sum((staging / f).stat().st_size for f in (GRAPH, TOKENIZER))
    manifest = manifest | {"size_bytes": size}
    _write_manifest(staging, manifest)
    return manifest | measure(staging, model, tokenizer, texts, max_length)


def _unsigned_if_closer(
    work: Path,
    staging: Path,
    signed: dict[str, Any],
    model: Any,
    tokenizer: Any,
    texts: list[str],
) -> dict[str, Any]:
    """The graph quantised again with unsigned weights, kept if it agrees more with the
    fp32 original: on a CPU without AVX-512 VNNI, large signed weights saturate ONNX
    Runtime's kernel (seen here on AVX2: 67 % agreement signed, 100 % unsigned)."""
    aside = staging / f"{GRAPH}.signed"
    os.replace(staging / GRAPH, aside)
    quantize(work / FUSED, staging / GRAPH, unsigned=True)
    unsigned = _measured(staging, signed, model, tokenizer, texts, signed["max_length"])
    if unsigned["agreement"] > signed["agreement"]:
        aside.unlink()
        logger.info(
            "signed int8 weights agreed on %.1f%%, unsigned on %.1f%%: unsigned kept",
            100 * signed["agreement"],
            100 * unsigned["agreement"],
            extra={"event": "model_import.unsigned_weights"},
        )
        return unsigned
    os.replace(aside, staging / GRAPH)
    return signed  # `import_model` writes the manifest it keeps


def measure(
    directory: Path, model: Any, tokenizer: Any, texts: list[str], max_length: int
) -> dict[str, Any]:
    """The int8 model as served vs the fp32 original on `texts`: the share of texts given
    the same label, and the int8 posts/s in batches of `SPEED_BATCH`."""
    classifier = OnnxClassifier(directory)
    try:
        reference = reference_probabilities(
            model, tokenizer, [preprocess(t) for t in texts], max_length
        )
        expected = (reference @ classifier.projection).argmax(axis=1)
        classifier.probabilities(texts[:SPEED_BATCH])  # warm-up: first calls pick kernels
        started = time.perf_counter()
        served = [
            classifier.probabilities(texts[i : i + SPEED_BATCH])
            for i in range(0, len(texts), SPEED_BATCH)
        ]
        elapsed = time.perf_counter() - started
    finally:
        classifier.close()
    got = [row.argmax() for batch in served for row in batch]
    agreement = sum(int(a == b) for a, b in zip(got, expected, strict=True)) / len(texts)
    return {"agreement": round(agreement, 4), "posts_per_s": round(len(texts) / elapsed, 1)}


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished directory to its name; a model already there (--force) is moved
    aside first and deleted after, so readers see the old model or the new, never a mix."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
