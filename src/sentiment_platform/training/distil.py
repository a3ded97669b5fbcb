"""Step 1's fitting: fine-tune teachers from several seeds, then distil a shallower student.

torch is imported inside the functions: serving never imports this module.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiment_platform.training import data as datasets
from sentiment_platform.training.calibrate import fit_offsets
from sentiment_platform.training.configs import SentimentConfig
from sentiment_platform.training.data import SENTIMENT_LABELS, Split, split_holdout
from sentiment_platform.training.encoder import (
    base_model_dir,
    build_model,
    keep_first_layers,
    load_tokenizer,
    model_device,
    padded_batch,
    torch_logits,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rows:
    """Tokenised training rows and their class indices (in SENTIMENT_LABELS order)."""

    encodings: list[Any]
    targets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(e.ids) for e in self.encodings])

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=len(SENTIMENT_LABELS))


def fit_sentiment(data_dir: Path, config: SentimentConfig) -> tuple[torch.nn.Module, Split]:
    """Fine-tune encoder + head and return it with the train rows it never saw.

    With `teacher_layers`, `teachers` deeper models are fine-tuned first, each from its own
    seed; the student is the first teacher's first `layers` layers and head, trained on the
    teachers' mean logits (softened) as well as the labels.
    """
    import torch

    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    base = base_model_dir(config)
    tokenizer = load_tokenizer(base, config.max_tokens)
    train_rows, holdout = split_holdout(data_dir, config, rng)
    for extra in config.extra_data:
        added = datasets.extra_sentiment(Path(extra), config.extra_limit, config.seed)
        logger.info("train sentiment: %d rows added from %s", len(added.texts), extra)
        train_rows += added
    rows = Rows(
        encodings=tokenizer.encode_batch(train_rows.texts),
        targets=np.array([SENTIMENT_LABELS.index(g) for g in train_rows.hard_labels()]),
    )
    logger.info("train sentiment: %d rows, config=%s", len(rows.targets), config)

    if not config.teacher_layers:
        torch.manual_seed(config.seed)
        model = build_model(base, config.layers, len(SENTIMENT_LABELS), config.device)
        fine_tune(model, rows, None, config, config.epochs, tokenizer, holdout, rng)
        return model, holdout
    teachers = [
        _fit_teacher(base, rows, config, config.seed + k, tokenizer, holdout, rng)
        for k in range(config.teachers)
    ]
    holdout_logits = torch.stack([logits for _, _, logits in teachers]).mean(0)
    logger.info(
        "%d teachers together: held-out macro-recall %.2f with honest shares",
        len(teachers),
        _honest_macro_recall(holdout_logits, holdout),
    )
    student = teachers[0][0]
    keep_first_layers(student, config.layers)
    mean_logits = torch.stack([logits for _, logits, _ in teachers]).mean(0)
    del teachers
    fine_tune(student, rows, mean_logits, config, config.epochs, tokenizer, holdout, rng)
    return student, holdout


def _fit_teacher(
    base: Path,
    rows: Rows,
    config: SentimentConfig,
    seed: int,
    tokenizer: Any,
    holdout: Split,
    rng: np.random.Generator,
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """One teacher fine-tuned from `seed`: the model, its logits on train rows and on holdout."""
    import torch

    torch.manual_seed(seed)
    layers = config.teacher_layers or config.layers
    model = build_model(base, layers, len(SENTIMENT_LABELS), config.device)
    holdout_logits = fine_tune(
        model, rows, None, config, config.teacher_epochs, tokenizer, holdout, rng
    )
    return model, torch_logits(model, rows.encodings, config.bf16), holdout_logits


def bucketed_batches(
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
    rng.shuffle(batches)
    return batches


def fine_tune(
    model: torch.nn.Module,
    rows: Rows,
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
    import torch
    import torch.nn.functional as F

    device = model_device(model)
    counts = rows.counts
    class_weights = torch.tensor(
        (len(rows.targets) / (len(counts) * counts)) ** config.balance, dtype=torch.float32
    ).to(device)
    targets = torch.from_numpy(rows.targets).to(device)
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(device)
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
    step, started, running = 0, time.monotonic(), torch.zeros(())
    best: tuple[float, dict[str, Any], torch.Tensor] = (-1.0, {}, torch.empty(0))
    holdout_encodings = tokenizer.encode_batch(holdout.texts)
    lengths = rows.lengths
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in bucketed_batches(lengths, config.batch_size, rng):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                logits, _ = model(*padded_batch(rows.encodings, batch, device))
            logits = logits.float()
            index = torch.from_numpy(batch).to(device)
            loss = loss_fn(logits, targets[index])
            if teacher_logits is not None:
                t = config.temperature
                distill = F.kl_div(
                    F.log_softmax(logits / t, dim=-1),
                    F.softmax(teacher_logits[index] / t, dim=-1),
                    reduction="batchmean",
                )
                loss = config.distill_alpha * t * t * distill + (1 - config.distill_alpha) * loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            # a tensor, read only when logged: `.item()` each step would wait for a GPU
            running = 0.98 * running + 0.02 * loss.detach() if step > 1 else loss.detach()
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
        holdout_logits = torch_logits(model, holdout_encodings, bf16=False)
        recall = _honest_macro_recall(holdout_logits, holdout)
        logger.info(
            "%d layers, epoch %d: held-out macro-recall %.2f with honest shares",
            layers,
            epoch,
            recall,
        )
        if recall > best[0]:
            best = (recall, copy.deepcopy(model.state_dict()), holdout_logits)
    model.load_state_dict(best[1])
    return best[2]


def _honest_macro_recall(logits: torch.Tensor, split: Split) -> float:
    """Macro-recall with the class offsets calibration would fit: what the shipped model gets.

    An epoch is kept for its recall once its shares are made honest, not for the recall it
    buys by over-calling a class (the offsets undo that).
    """
    import torch

    gold = np.array([SENTIMENT_LABELS.index(g) for g in split.hard_labels()])
    log_p = torch.log_softmax(logits.float(), dim=-1).numpy()
    return fit_offsets(log_p, gold)[1]["macro_recall"]
