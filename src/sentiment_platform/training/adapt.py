"""`sentiment-platform adapt`: the active embedded model adapted to the user's own labels,
judged against the active model on the random labels, and kept as a new registry version.

1. Read every label in the store (random and uncertain alike: both teach) and which
   models serve now: the embedded model or an earlier adapted version (an imported ONNX
   model serving sentiment has no features to adapt from: refused, saying so).
2. Encode the labelled posts, and a sample of the base training data to replay, in batches
   through the embedded encoder (one pass: probabilities and pooled features).
3. Cross-validate, per task: the random labels fall into `FOLDS` stratified folds; for
   each, a candidate learns from every other label (and the replay) and predicts that fold.
   The pooled predictions give the candidate's macro-recall and accuracy, beside the active
   model's on the same random labels. (An active adapted model learnt from those very
   labels, so its figure is optimistic: the comparison leans towards keeping it.) Emotion
   too, when at least `--min-labels` labels (`MIN_RANDOM` of them random) carry one.
4. Learn the candidate on every label, write `MODELS_DIR/<name>/` (the emotion correction
   only if it won; else the shipped emotion head serves), register it (kind `adapted`), and
   activate each task it won, only when asked.

The fitting is `adapt_fit`; serving the result is `services/analysis/adaptation.py`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
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
from sentiment_platform.services.analysis.registry import Choice
from sentiment_platform.services.analysis.registry_backend import load_correction
from sentiment_platform.training import adapt_fit
from sentiment_platform.training.adapt_data import (
    EMOTION_DATA,
    REPLAY_ROWS,
    SENTIMENT_DATA,
    Progress,
    emotion_replay_sample,
    encode,
    replay_directory,
    replay_sample,
)
from sentiment_platform.training.adapt_fit import Figures, Rows

FOLDS = 5
MIN_RANDOM = 30  # random labels the comparison needs before it means anything
SENTIMENT, EMOTION = Task.SENTIMENT.value, Task.EMOTION.value
Texts = tuple[list[str], list[str]]  # texts and their labels


@dataclass(frozen=True, slots=True)
class AdaptRequest:
    min_labels: int = 200
    activate: bool = False
    replay_data: Path | None = None  # None: SENTIMENT_DATA, if it is there
    replay_rows: int = REPLAY_ROWS
    folds: int = FOLDS


@dataclass(slots=True)
class TaskOutcome:
    """One task's comparison: the active model and the candidate on its random labels."""

    task: str
    labels: int
    random_labels: int
    replayed: int
    active: str
    active_figures: Figures
    candidate_figures: Figures
    correction: Correction = field(repr=False)

    @property
    def wins(self) -> bool:
        return self.candidate_figures.macro_recall > self.active_figures.macro_recall


@dataclass(slots=True)
class AdaptOutcome:
    """What `adapt` did, as the CLI prints it (and `model.json` keeps)."""

    name: str
    labels: int
    random_labels: int
    sentiment: TaskOutcome
    emotion: TaskOutcome | None  # None: the emotion was not compared (`notes` says why)
    notes: list[str]
    activated: list[str] = field(default_factory=list)  # the tasks it now serves
    seconds: float = 0.0
    path: Path = field(default_factory=Path)

    @property
    def tasks(self) -> list[TaskOutcome]:
        return [self.sentiment] + ([self.emotion] if self.emotion is not None else [])


@dataclass(frozen=True, slots=True)
class _Plan:
    choices: dict[str, Choice]
    labelled: list[store.LabelledText]
    taken: set[str]
    emotion: bool  # compare the emotion too
    notes: list[str]


def _learn_task(
    task: str,
    rows: Rows,
    random: np.ndarray,
    replay: Rows | None,
    active: tuple[str, Correction | None],
    request: AdaptRequest,
    progress: Progress,
) -> TaskOutcome:
    """Cross-validate the candidate against the active model on `rows[random]`, then learn
    it on every row (blocking)."""
    classes = int(rows.probabilities.shape[1])
    steps, stage = request.folds + 1, f"cross-validating {task}"
    predicted = adapt_fit.cross_validated(
        rows, random, replay, classes, request.folds, lambda done, _: progress(stage, done, steps)
    )
    truth = rows.labels[random]
    active_figures = adapt_fit.figures(truth, adapt_fit.predict(active[1], rows.take(random)))
    final = adapt_fit.fit_correction(adapt_fit.training_rows(rows, replay, classes), classes)
    progress(stage, steps, steps)
    return TaskOutcome(
        task,
        len(rows),
        int(random.size),
        0 if replay is None else len(replay),
        active[0],
        active_figures,
        adapt_fit.figures(truth, predicted),
        final,
    )


def _rows(probabilities: np.ndarray, features: np.ndarray, labels: list[int]) -> Rows:
    return Rows(probabilities, features, np.array(labels, np.int64), np.ones(len(labels), "f4"))


def _learn(
    backend: EmbeddedBackend,
    plan: _Plan,
    actives: dict[str, tuple[str, Correction | None]],
    replays: dict[str, Texts],
    request: AdaptRequest,
    progress: Progress,
) -> tuple[TaskOutcome, TaskOutcome | None]:
    """Encode everything once, then compare and learn each task (blocking)."""
    texts = [item.content for item in plan.labelled]
    batches = [texts, replays[SENTIMENT][0], replays[EMOTION][0]]
    total, done, encoded = sum(map(len, batches)), 0, []
    for batch in batches:
        encoded.append(encode(backend, batch, progress, done, total))
        done += len(batch)
    (probabilities, features), (s_probabilities, s_features), (_, e_features) = encoded
    sentiments = list(backend.encoder.sentiment_labels)
    rows = _rows(probabilities, features, [sentiments.index(i.sentiment) for i in plan.labelled])
    replay = None
    if replays[SENTIMENT][0]:
        replay = _rows(
            s_probabilities, s_features, list(map(sentiments.index, replays[SENTIMENT][1]))
        )
    random = np.flatnonzero([item.random for item in plan.labelled])
    sentiment = _learn_task(SENTIMENT, rows, random, replay, actives[SENTIMENT], request, progress)
    if not plan.emotion:
        return sentiment, None
    emotions = list(backend.encoder.config["emotion_labels"])
    keep = np.array([i for i, item in enumerate(plan.labelled) if item.emotion is not None])
    e_rows = _rows(
        backend.emotion_probabilities(features[keep]),
        features[keep],
        [emotions.index(str(plan.labelled[i].emotion)) for i in keep],
    )
    e_replay = None
    if replays[EMOTION][0]:
        e_replay = _rows(
            backend.emotion_probabilities(e_features),
            e_features,
            list(map(emotions.index, replays[EMOTION][1])),
        )
    e_random = np.flatnonzero([plan.labelled[i].random for i in keep])
    emotion = _learn_task(EMOTION, e_rows, e_random, e_replay, actives[EMOTION], request, progress)
    return sentiment, emotion


async def _plan(session: AsyncSession, request: AdaptRequest) -> _Plan:
    """What serves now, every label, the names taken, whether the emotion is compared; the
    refusals."""
    await registry.ensure_embedded(session)
    choices = await registry.serving_choice(session)
    choice = choices[SENTIMENT]
    if choice.kind not in (registry.EMBEDDED, ADAPTED):
        raise Conflict(
            f"sentiment is served by {choice.name!r} ({choice.kind or 'missing'}), which adapt "
            "cannot learn from: `model activate embedded --task sentiment` first"
        )
    # The embedded model reads English alone (issue 31): labels on other languages teach it
    # nothing it will be asked.
    labelled = await store.labelled_texts(session, registry.EMBEDDED_LANGUAGES)
    random = sum(item.random for item in labelled)
    least = max(MIN_RANDOM, request.folds)
    if len(labelled) < request.min_labels:
        raise Unprocessable(
            f"adapt needs at least {request.min_labels} labels (--min-labels); the store holds "
            f"{len(labelled)} ({random} random). Label posts from GET /api/review first"
        )
    if random < least:
        raise Unprocessable(
            f"adapt needs at least {least} random labels (posts handed out by GET "
            f"/api/review?strategy=random) to compare models; the store holds {random} of "
            f"{len(labelled)} labels"
        )
    emotional = [item for item in labelled if item.emotion is not None]
    e_random = sum(item.random for item in emotional)
    notes, emotion = [], False
    if choices[EMOTION].kind not in (registry.EMBEDDED, ADAPTED):
        notes.append(f"emotion kept: it is served by {choices[EMOTION].name!r}")
    elif len(emotional) < request.min_labels or e_random < least:
        notes.append(
            f"emotion kept: {len(emotional)} labels carry an emotion ({e_random} random); "
            f"adapting it needs {request.min_labels} (--min-labels), {least} of them random"
        )
    else:
        emotion = True
    taken = {row.name for row in await store.list_models(session)}
    return _Plan(choices, labelled, taken, emotion, notes)


async def adapt(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    request: AdaptRequest,
    progress: Progress = lambda stage, done, total: None,
) -> AdaptOutcome:
    """Adapt, compare, register and (when asked, for each task it won) activate."""
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        plan = await _plan(session, request)
    found = {
        SENTIMENT: replay_directory(SENTIMENT_DATA, request.replay_data, request.replay_rows),
        EMOTION: replay_directory(EMOTION_DATA, None, request.replay_rows if plan.emotion else 0),
    }
    notes = plan.notes + [f"{task}: {note}" for task, (_, note) in found.items()
                          if note and (task == SENTIMENT or plan.emotion)]  # fmt: skip
    backend = await asyncio.to_thread(load_embedded_backend, settings)
    try:
        encoder = backend.encoder.config
        actives: dict[str, tuple[str, Correction | None]] = {
            task: (choice.name, None) for task, choice in plan.choices.items()
        }
        for task, choice in plan.choices.items():
            if choice.kind == ADAPTED:
                actives[task] = (choice.name, load_correction(settings, choice, encoder))
        replays = {
            SENTIMENT: replay_sample(found[SENTIMENT][0], request.replay_rows),
            EMOTION: emotion_replay_sample(found[EMOTION][0], request.replay_rows),
        }
        sentiment, emotion = await asyncio.to_thread(
            _learn, backend, plan, actives, replays, request, progress
        )
    finally:
        backend.close()
    models_dir = settings.models_path
    on_disk = {p.name for p in models_dir.iterdir()} if models_dir.is_dir() else set()
    name = adapted_name(backend.name, plan.taken | on_disk)
    outcome = AdaptOutcome(
        name=name,
        labels=len(plan.labelled),
        random_labels=sum(item.random for item in plan.labelled),
        sentiment=sentiment,
        emotion=emotion,
        notes=notes,
        path=registry.model_directory(settings, name),
    )
    heads = {t.task: t.correction for t in outcome.tasks if t.task == SENTIMENT or t.wins}
    manifest = write_adapted(outcome.path, _manifest(outcome, backend), heads)
    async with sessions() as session, session.begin():
        await registry.register(session, manifest, kind=ADAPTED, tasks=list(heads))
        for compared in outcome.tasks:
            if request.activate and compared.wins:
                await registry.activate(session, name, compared.task)
                outcome.activated.append(compared.task)
    outcome.seconds = round(time.perf_counter() - started, 1)
    return outcome


def _manifest(outcome: AdaptOutcome, backend: EmbeddedBackend) -> dict[str, Any]:
    def figures(task: TaskOutcome) -> dict[str, Any]:
        return {
            "labels": task.labels,
            "random_labels": task.random_labels,
            "replayed": task.replayed,
            "active": {"model": task.active, **_figures(task.active_figures)},
            "candidate": _figures(task.candidate_figures),
            "wins": task.wins,
        }

    return {
        "name": outcome.name,
        "task": SENTIMENT,
        "labels": {
            SENTIMENT: list(backend.encoder.sentiment_labels),
            EMOTION: list(backend.encoder.config["emotion_labels"]),
        },
        "base": backend.name,
        "languages": ["en"],
        "source": "adapt",
        "imported_at": utcnow().isoformat(),
        "training": {
            "labels": outcome.labels,
            "random_labels": outcome.random_labels,
            "components": adapt_fit.COMPONENTS,
            "weight_decay": adapt_fit.WEIGHT_DECAY,
            "notes": outcome.notes,
        },
        "cross_validation": {task.task: figures(task) for task in outcome.tasks},
    }


def _figures(figures: Figures) -> dict[str, float]:
    return {"macro_recall": figures.macro_recall, "accuracy": figures.accuracy}
