"""Adaptation's part of `trust.py`: what `sentiment-platform adapt` gains on shifted sets, and
how long it takes for 1,000 labels.

Gain: per set and n, `repeats` times, n posts drawn at random **without** replacement are
the labels (all random labels, as a review queue's draws give); `adapt`'s own code
(`training.adapt_fit`) cross-validates the candidate against the shipped model on them
(5 folds: would `--activate` serve it?) and learns the candidate on all n plus the same
replayed base tweets `adapt` replays; both models then predict the **unlabelled rest** of
the set, and the gain is the candidate's macro-recall there minus the shipped model's.
Sets too small to leave 200 posts unlabelled are skipped at that n.

Time: a throw-away SQLite store of 1,000 GoEmotions posts, analysed by the embedded model,
drawn by the review queue's random draw and labelled; then `sentiment-platform adapt
--min-labels 200` runs in its own process, replay and all, and its wall time is reported
with the load average.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from sentiment_platform.config import Settings
from sentiment_platform.services.analysis.embedded_backend import (
    artifact_files,
    load_embedded_backend,
)
from sentiment_platform.training import adapt_fit
from sentiment_platform.training.adapt import FOLDS
from sentiment_platform.training.adapt_data import REPLAY_ROWS, replay_sample
from sentiment_platform.training.adapt_fit import Rows
from sentiment_platform.training.configs import SentimentConfig
from sentiment_platform.training.data import (
    SENTIMENT_LABELS,
    Split,
    load_sentiment,
    resample_negative,
    split_holdout,
)

CACHE = Path("/tmp/trust-predictions")
BATCH = 256
MIN_REST = 200
TARGET_GAIN, TARGET_N = 1.5, 1_000


def encode(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, pooled features) of the embedded encoder, cached by text."""
    backend = load_embedded_backend(Settings())
    try:
        digest = hashlib.sha256("\n".join(split.texts).encode()).hexdigest()[:16]
        path = CACHE / f"{backend.name.replace('/', '_')}-features-{digest}.npz"
        if path.exists():
            with np.load(path) as cached:
                return cached["probabilities"], cached["features"]
        parts = [
            backend.encoder.run(split.texts[i : i + BATCH])
            for i in range(0, len(split.texts), BATCH)
        ]
    finally:
        backend.close()
    probabilities = np.concatenate([p for p, _ in parts])
    features = np.concatenate([f for _, f in parts])
    CACHE.mkdir(exist_ok=True)
    np.savez(path, probabilities=probabilities, features=features)
    return probabilities, features


def rows_of(split: Split) -> Rows:
    probabilities, features = encode(split)
    labels = np.array([SENTIMENT_LABELS.index(label) for label in split.hard_labels()])
    return Rows(probabilities, features, labels, np.ones(labels.size, np.float32))


def replay_rows(data: Path) -> Rows:
    texts, labels = replay_sample(data / "tweeteval" / "sentiment", REPLAY_ROWS)
    return rows_of(Split(texts, [{label: 1.0} for label in labels]))


def gains(
    rows: Rows, replay: Rows, n: int, repeats: int, seed: int
) -> tuple[list[float], float, int]:
    """(gain per repetition in points, the shipped model's mean macro-recall on the rest,
    repetitions whose cross-validation would have activated the candidate)."""
    rng = np.random.default_rng(seed)
    found, bases, wins = [], [], 0
    for _ in range(repeats):
        order = rng.permutation(len(rows))
        labelled, rest = rows.take(order[:n]), rows.take(order[n:])
        judged = np.arange(n)
        predicted = adapt_fit.cross_validated(labelled, judged, replay, 3, FOLDS)
        active = adapt_fit.figures(labelled.labels, adapt_fit.predict(None, labelled))
        wins += adapt_fit.figures(labelled.labels, predicted).macro_recall > active.macro_recall
        correction = adapt_fit.fit_correction(adapt_fit.training_rows(labelled, replay, 3), 3)
        base = adapt_fit.figures(rest.labels, adapt_fit.predict(None, rest)).macro_recall
        adapted = adapt_fit.figures(rest.labels, adapt_fit.predict(correction, rest)).macro_recall
        found.append(adapted - base)
        bases.append(base)
    return found, float(np.mean(bases)), wins


def report_gains(
    sets: dict[str, Split], data: Path, sizes: list[int], repeats: int, seed: int
) -> None:
    replay = replay_rows(data)
    print(
        f"\n## adaptation's macro-recall gain on the unlabelled rest ({repeats} repetitions; "
        f"{len(replay):,} replayed base tweets; cells: mean gain in points [min, max], "
        f"the shipped model's macro-recall on the rest, CV would activate k/{repeats})"
    )
    print("| set | " + " | ".join(f"n = {n:,}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    verdict = []
    for name, split in sets.items():
        rows = rows_of(split)
        cells = []
        for n in sizes:
            if len(rows) - n < MIN_REST:
                cells.append(f"— (only {len(rows):,} posts)")
                continue
            started = time.perf_counter()
            found, base, wins = gains(rows, replay, n, repeats, seed + n)
            cells.append(
                f"{np.mean(found):+.2f} [{min(found):+.2f}, {max(found):+.2f}], base "
                f"{base:.1f}, {wins}/{repeats} ({time.perf_counter() - started:.0f} s)"
            )
            if n == TARGET_N:
                verdict.append((name, float(np.mean(found))))
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, gain in verdict:
        met = "met" if gain >= TARGET_GAIN else "MISSED"
        print(f"- {name}, n = {TARGET_N:,}: gain {gain:+.2f} points ({met}; target {TARGET_GAIN})")


async def _labelled_store(url: str, split: Split, n: int) -> None:
    from sentiment_platform import store
    from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
    from sentiment_platform.domain import Analysis, Post, PostLabel, Sentiment, utcnow
    from sentiment_platform.services.trust.review import draw_random
    from sentiment_platform.store import LabelScope

    settings = Settings(database_url=url)
    engine = create_engine(settings)
    await upgrade_schema(engine)
    sessions = create_session_factory(engine)
    texts, labels = split.texts[:n], split.hard_labels()[:n]
    backend = load_embedded_backend(settings)
    predictions = backend.predict(texts)
    backend.close()
    posts = [Post(post_id=f"b{i}", source="reddit", content=t) for i, t in enumerate(texts)]
    analyses = [Analysis.of(p.post_id, pr) for p, pr in zip(posts, predictions, strict=True)]
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    async with sessions() as session, session.begin():
        await draw_random(session, LabelScope(), n, rng=random.Random(0))
    async with engine.connect() as connection:
        for post, label in zip(posts, labels, strict=True):
            await store.set_label(
                connection, post.post_id, PostLabel(sentiment=Sentiment(label)), utcnow()
            )
    await engine.dispose()


def report_time(split: Split, n: int = TARGET_N) -> None:
    """`adapt`'s wall time for `n` labels, in its own process (replay and all)."""
    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite+aiosqlite:///{work}/store.db"
        asyncio.run(_labelled_store(url, split, n))
        env = os.environ | {"DATABASE_URL": url, "MODELS_DIR": f"{work}/models"}
        cli = "from sentiment_platform.cli import app; app()"
        command = [sys.executable, "-c", cli, "adapt", "--min-labels", "200"]
        load = os.getloadavg()
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    tail = [
        line for line in done.stdout.splitlines() if "macro-recall" in line or "labels:" in line
    ]
    print(
        f"\n## adapt's wall time for {n:,} labels: {seconds:.1f} s (exit {done.returncode}; "
        f"load average before {load[0]:.1f} on {os.cpu_count()} cores; target ≤ 600 s)"
    )
    for line in tail or done.stderr.splitlines()[-5:]:
        print("   " + line.strip())


def shifted_extra(data: Path) -> dict[str, Split]:
    """Sets large enough for 1,000 labels and a rest, of tweets the model never trained on:
    val plus the 2,000 train rows `train` held out (`split_holdout`, the shipped config's
    seed), less those the replay sample holds, resampled to 33 and 50 % negative; and UMSAB
    Hindi (train + val): largely romanised, code-mixed tweets, a domain the model never saw
    (the platform's language detection would send many of them elsewhere)."""
    sets: dict[str, Split] = {}
    sentiment = data / "tweeteval" / "sentiment"
    config = json.loads((artifact_files() / "config.json").read_text("utf-8"))
    known = {f.name for f in fields(SentimentConfig)}
    trained = SentimentConfig(**{k: v for k, v in config["sentiment_config"].items() if k in known})
    _, held_out = split_holdout(sentiment, trained)
    replayed = set(replay_sample(sentiment, REPLAY_ROWS)[0])
    unseen = load_sentiment(sentiment, "val") + held_out
    unseen = unseen.take(i for i, text in enumerate(unseen.texts) if text not in replayed)
    for share in (0.33, 0.50):
        sets[f"val + held-out {round(100 * share)} % neg"] = resample_negative(unseen, share)
    hindi = data / "umsab" / "hindi"
    if (hindi / "train_text.txt").is_file():
        sets["umsab hindi (code-mixed)"] = load_sentiment(hindi, "train") + load_sentiment(
            hindi, "val"
        )
    return sets
