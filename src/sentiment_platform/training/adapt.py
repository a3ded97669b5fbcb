"""`sentiment-platform adapt`: the active embedded model adapted to the user's own labels,
judged against the active model on the random labels, and kept as a new registry version.

1. Read every label in the store (random and uncertain alike: both teach) and which
   model serves sentiment now: the embedded model or an earlier adapted version (an
   imported ONNX model has no features to adapt from: refused, saying so).
2. Encode the labelled posts, and a sample of the base training data to replay, in batches
   through the embedded encoder (one pass: probabilities and pooled features).
3. Cross-validate: the random labels fall into `FOLDS` stratified folds; for each, a
   candidate learns from every other label (and the replay) and predicts that fold. The
   pooled predictions give the candidate's macro-recall and accuracy, beside the active
   model's on the same random labels. (An active adapted model learnt from those very
   labels, so its figure is optimistic: the comparison leans towards keeping it.)
4. Learn the candidate on every label, write `MODELS_DIR/<name>/`, register it (kind
   `adapted`), and activate it only when asked and only when it won.

The fitting is `adapt_fit`; serving the result is `services/analysis/adaptation.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import Task, utcnow
from sentiment_platform.errors import Conflict, Unprocessable
from sentiment_platform.services.analysis import registry
from sentiment_platform.services.analysis.adaptation import (
    ADAPTED,
    Correction,
    adapted_name,
    write_adapted,
)
from sentiment_platform.services.analysis.embedded_backend import (
    EmbeddedBackend,
    load_embedded_backend,
)
from sentiment_platform.services.analysis.registry_backend import load_correction
from sentiment_platform.training import adapt_fit
from sentiment_platform.training.adapt_fit import Figures, Rows
from sentiment_platform.training.data import load_sentiment

FOLDS = 5
MIN_RANDOM = 30  # random labels the comparison needs before it means anything
REPLAY_ROWS = 3_000  # base training tweets replayed beside the labels
REPLAY_SEED = 30
BATCH = 256  # texts per encoder call
# Where the base model's sentiment data lives in a checkout (`train --data`): beside the
# working directory, else beside the source tree.
REPLAY_DATA = Path("..") / "shared" / "data" / "tweeteval" / "sentiment"

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True, slots=True)
class AdaptRequest:
    min_labels: int = 200
    activate: bool = False
    replay_data: Path | None = None  # None: REPLAY_DATA, if it is there
    replay_rows: int = REPLAY_ROWS
    folds: int = FOLDS


@dataclass(slots=True)
class AdaptOutcome:
    """What `adapt` did, as the CLI prints it (and `model.json` keeps)."""

    name: str
    labels: int
    random_labels: int
    replayed: int
    replay_note: str | None
    active: str
    active_figures: Figures
    candidate_figures: Figures
    wins: bool
    activated: bool = False
    seconds: float = 0.0
    path: Path = field(default_factory=Path)


def _replay_directory(request: AdaptRequest) -> tuple[Path | None, str | None]:
    """The replay data's directory, or None and why it is left out."""
    if request.replay_rows <= 0:
        return None, "no replay (--replay-rows 0): the labels alone teach the model"
    if request.replay_data is not None:
        if not (request.replay_data / "train_text.txt").is_file():
            raise Unprocessable(
                f"--replay-data {request.replay_data}: no train_text.txt and train_labels.txt "
                "there (TweetEval sentiment's layout)"
            )
        return request.replay_data, None
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        directory = (root / REPLAY_DATA).resolve()
        if (directory / "train_text.txt").is_file():
            return directory, None
    return None, (
        f"replay data not found ({REPLAY_DATA} from here or from the source tree; "
        "--replay-data DIR names it): training on the labels alone, so the model may drift "
        "from what it knew where the labels are few"
    )


def _encode(
    backend: EmbeddedBackend, texts: list[str], progress: Progress, done: int, total: int
) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for start in range(0, len(texts), BATCH):
        parts.append(backend.encoder.run(texts[start : start + BATCH]))
        done += len(texts[start : start + BATCH])
        progress("encoding", done, total)
    if not parts:
        size = int(backend.encoder.config["feature_size"])
        return np.zeros((0, len(backend.sentiments)), np.float32), np.zeros((0, size), np.float32)
    return np.concatenate([p for p, _ in parts]), np.concatenate([f for _, f in parts])


@dataclass(frozen=True, slots=True)
class _Learnt:
    correction: Correction
    active: Figures
    candidate: Figures
    replayed: int


def _learn(
    backend: EmbeddedBackend,
    labelled: list[store.LabelledText],
    active: Correction | None,
    replay: tuple[list[str], list[str]],
    request: AdaptRequest,
    progress: Progress,
) -> _Learnt:
    """Encode, cross-validate and fit (blocking: numpy and ONNX Runtime)."""
    classes = list(backend.encoder.sentiment_labels)
    texts = [item.content for item in labelled]
    total = len(texts) + len(replay[0])
    probabilities, features = _encode(backend, texts, progress, 0, total)
    labels = np.array([classes.index(item.sentiment) for item in labelled], dtype=np.int64)
    rows = Rows(probabilities, features, labels, np.ones(len(labels), np.float32))
    replayed: Rows | None = None
    if replay[0]:
        replay_probabilities, replay_features = _encode(
            backend, replay[0], progress, len(texts), total
        )
        replay_labels = np.array([classes.index(label) for label in replay[1]], dtype=np.int64)
        replayed = Rows(
            replay_probabilities,
            replay_features,
            replay_labels,
            np.ones(len(replay_labels), np.float32),
        )
    random = np.flatnonzero([item.random for item in labelled])
    steps = request.folds + 1

    def step(done: int, _: int) -> None:
        progress("cross-validating", done, steps)

    predicted = adapt_fit.cross_validated(rows, random, replayed, len(classes), request.folds, step)
    truth = labels[random]
    active_figures = adapt_fit.figures(truth, adapt_fit.predict(active, rows.take(random)))
    candidate_figures = adapt_fit.figures(truth, predicted)
    final = adapt_fit.fit_correction(
        adapt_fit.training_rows(rows, replayed, len(classes)), len(classes)
    )
    progress("cross-validating", steps, steps)
    return _Learnt(
        final, active_figures, candidate_figures, 0 if replayed is None else len(replayed)
    )


def replay_sample(directory: Path | None, rows: int) -> tuple[list[str], list[str]]:
    """`rows` base training tweets (a fixed sample) and their labels; none without data."""
    if directory is None:
        return [], []
    data = load_sentiment(directory, "train")
    pick = np.random.default_rng(REPLAY_SEED).permutation(len(data.texts))[:rows]
    taken = data.take(np.sort(pick))
    return taken.texts, taken.hard_labels()


async def _plan(session: AsyncSession, request: AdaptRequest) -> tuple[Any, list[Any], set[str]]:
    """(the sentiment choice serving now, every label, the names taken), checked."""
    await registry.ensure_embedded(session)
    choice = (await registry.serving_choice(session))[Task.SENTIMENT.value]
    if choice.kind not in (registry.EMBEDDED, ADAPTED):
        raise Conflict(
            f"sentiment is served by {choice.name!r} ({choice.kind or 'missing'}), which adapt "
            "cannot learn from: `model activate embedded --task sentiment` first"
        )
    labelled = await store.labelled_texts(session)
    random = sum(item.random for item in labelled)
    if len(labelled) < request.min_labels:
        raise Unprocessable(
            f"adapt needs at least {request.min_labels} labels (--min-labels); the store holds "
            f"{len(labelled)} ({random} random). Label posts from GET /api/review first"
        )
    if random < max(MIN_RANDOM, request.folds):
        raise Unprocessable(
            f"adapt needs at least {max(MIN_RANDOM, request.folds)} random labels (posts "
            f"handed out by GET /api/review?strategy=random) to compare models; the store "
            f"holds {random} of {len(labelled)} labels"
        )
    taken = {row.name for row in await store.list_models(session)}
    return choice, labelled, taken


async def adapt(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    request: AdaptRequest,
    progress: Progress = lambda stage, done, total: None,
) -> AdaptOutcome:
    """Adapt, compare, register and (when asked and won) activate; see the module."""
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        choice, labelled, taken = await _plan(session, request)
    replay_dir, replay_note = _replay_directory(request)
    backend = await asyncio.to_thread(load_embedded_backend, settings)
    try:
        encoder = backend.encoder.config
        active = load_correction(settings, choice, encoder) if choice.kind == ADAPTED else None
        replay = await asyncio.to_thread(replay_sample, replay_dir, request.replay_rows)
        learnt = await asyncio.to_thread(
            _learn, backend, labelled, active, replay, request, progress
        )
    finally:
        backend.close()
    models_dir = settings.models_path
    on_disk = {p.name for p in models_dir.iterdir()} if models_dir.is_dir() else set()
    name = adapted_name(backend.name, taken | on_disk)
    outcome = AdaptOutcome(
        name=name,
        labels=len(labelled),
        random_labels=sum(item.random for item in labelled),
        replayed=learnt.replayed,
        replay_note=replay_note,
        active=choice.name,
        active_figures=learnt.active,
        candidate_figures=learnt.candidate,
        wins=learnt.candidate.macro_recall > learnt.active.macro_recall,
        path=registry.model_directory(settings, name),
    )
    manifest = write_adapted(
        outcome.path, _manifest(outcome, backend, request, replay_dir), learnt.correction
    )
    async with sessions() as session, session.begin():
        await registry.register(session, manifest, kind=ADAPTED)
        if request.activate and outcome.wins:
            await registry.activate(session, name, Task.SENTIMENT.value)
            outcome.activated = True
    outcome.seconds = round(time.perf_counter() - started, 1)
    return outcome


def _manifest(
    outcome: AdaptOutcome, backend: EmbeddedBackend, request: AdaptRequest, replay: Path | None
) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "task": Task.SENTIMENT.value,
        "labels": list(backend.encoder.sentiment_labels),
        "base": backend.name,
        "languages": ["en"],
        "source": "adapt",
        "imported_at": utcnow().isoformat(),
        "emotion": f"{backend.name}'s emotion head (not adapted)",
        "training": {
            "labels": outcome.labels,
            "random_labels": outcome.random_labels,
            "replayed": outcome.replayed,
            "replay_data": None if replay is None else str(replay),
            "components": adapt_fit.COMPONENTS,
            "weight_decay": adapt_fit.WEIGHT_DECAY,
        },
        "cross_validation": {
            "folds": request.folds,
            "random_labels": outcome.random_labels,
            "active": {"model": outcome.active, **asdict(outcome.active_figures)},
            "candidate": asdict(outcome.candidate_figures),
            "wins": outcome.wins,
        },
    }
