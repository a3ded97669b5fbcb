"""What `adapt` reads besides the store: the base model's training data to replay (found
beside the checkout, or where `--replay-data` says), and the encoder's outputs for a list of
texts, in batches with progress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sentiment_platform.errors import Unprocessable
from sentiment_platform.services.analysis.embedded_backend import EmbeddedBackend
from sentiment_platform.training.data import Split, load_emotion, load_sentiment

REPLAY_ROWS = 3_000  # base training rows replayed beside the labels, per task
REPLAY_SEED = 30
BATCH = 256  # texts per encoder call
# Where the base model's data lives in a checkout (`train --data`): beside the working
# directory, else beside the source tree. Sentiment: TweetEval; emotion: GoEmotions-Ekman.
SENTIMENT_DATA = Path("..") / "shared" / "data" / "tweeteval" / "sentiment"
EMOTION_DATA = Path("..") / "shared" / "data" / "goemotions_ekman"
MARKERS = {SENTIMENT_DATA: "train_text.txt", EMOTION_DATA: "train.tsv"}

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def replay_directory(
    default: Path, given: Path | None, rows: int
) -> tuple[Path | None, str | None]:
    """The replay data's directory, or None and why it is left out (to print)."""
    marker = MARKERS[default]
    if rows <= 0:
        return None, "no replay (--replay-rows 0): the labels alone teach the model"
    if given is not None:
        if not (given / marker).is_file():
            raise Unprocessable(
                f"--replay-data {given}: no {marker} there (TweetEval sentiment's layout: "
                "train_text.txt and train_labels.txt)"
            )
        return given, None
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        directory = (root / default).resolve()
        if (directory / marker).is_file():
            return directory, None
    return None, (
        f"replay data not found ({default} from here or from the source tree): training on "
        "the labels alone, so the model may drift from what it knew where the labels are few"
    )


def _sample(data: Split, rows: int) -> tuple[list[str], list[str]]:
    pick = np.random.default_rng(REPLAY_SEED).permutation(len(data.texts))[:rows]
    taken = data.take(np.sort(pick))
    return taken.texts, taken.hard_labels()


def replay_sample(directory: Path | None, rows: int) -> tuple[list[str], list[str]]:
    """`rows` base training tweets (a fixed sample) and their sentiments; none without data."""
    if directory is None:
        return [], []
    return _sample(load_sentiment(directory, "train"), rows)


def emotion_replay_sample(directory: Path | None, rows: int) -> tuple[list[str], list[str]]:
    """`rows` single-label GoEmotions-Ekman train rows and their emotions; none without data."""
    if directory is None:
        return [], []
    return _sample(load_emotion(directory, "train", single_label_only=True), rows)


def encode(
    backend: EmbeddedBackend, texts: list[str], progress: Progress, done: int, total: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sentiment probabilities, pooled features), one row per text, in batches of BATCH;
    `progress("encoding", done + …, total)` after each."""
    size = int(backend.encoder.config["feature_size"])
    parts = [(np.zeros((0, len(backend.sentiments)), np.float32), np.zeros((0, size), np.float32))]
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        parts.append(backend.encoder.run(batch))
        done += len(batch)
        progress("encoding", done, total)
    return np.concatenate([p for p, _ in parts]), np.concatenate([f for _, f in parts])
