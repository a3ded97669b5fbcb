"""The `embedded` entry of ANALYZER_BACKENDS: the registry's active models, switchable live.

It answers sentiment from the model active for sentiment and emotion from the one active for
emotion: the embedded model (one encoder pass gives both), an imported int8 ONNX classifier
(`OnnxClassifier`, whose labels are already the platform's), or an adapted model (the
embedded encoder's pass, that task's probabilities corrected: `adaptation.Correction`). With
nothing activated it is exactly the embedded model, so a store that never used the registry
sees no change.

Each language is read by its own pair (`Routes`): the pair activated for it, else the `*`
pair; and a pair reads a language only when both its models are registered for it, so a
model never labels a language it was not registered for (`reader` says None, and the chain
moves on to the LLM or leaves the post unanalysed). Posts of no known language ("und", or
stored before detection) go to the `*` pair.

What serves now is one immutable `Routes`. A batch reads it once, so it is analysed wholly
by one set of pairs; `services.analysis.model_switch` loads the next set off the event loop
and swaps it in between batches. A set that fails to load never replaces the one serving:
`problem` says why, and the analyzer's status (what /api/health shows) reports it as down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Prediction, Sentiment, Task
from sentiment_platform.services.analysis.adaptation import ADAPTED, Correction, read_adapted
from sentiment_platform.services.analysis.backends import BackendUnavailable
from sentiment_platform.services.analysis.embedded_backend import EmbeddedBackend, artifact_files
from sentiment_platform.services.analysis.language import UNDETERMINED
from sentiment_platform.services.analysis.registry import (
    ANY_LANGUAGE,
    EMBEDDED,
    EMBEDDED_LANGUAGES,
    Choice,
    model_directory,
    served_name,
)

ChoicesByLanguage = Mapping[str, Mapping[str, Choice]]  # {language or "*": {task: Choice}}


class Classifier(Protocol):
    """One imported model: labels for one task (`OnnxClassifier`)."""

    name: str
    task: Task

    def predict(self, texts: Sequence[str]) -> list[tuple[StrEnum, float]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Served:
    """What serves one task: the embedded model (classifier None), an imported one, or an
    adapted one (the embedded model with this task's `correction`), and the languages it is
    registered for."""

    name: str
    classifier: Classifier | None
    imported_at: datetime | None = None
    languages: frozenset[str] = frozenset(EMBEDDED_LANGUAGES)
    correction: Correction | None = None

    def same_as(self, choice: Choice) -> bool:
        return (
            self.name == choice.name
            and self.imported_at == choice.imported_at
            and self.languages == frozenset(choice.languages)
        )


@dataclass(frozen=True, slots=True)
class ModelSet:
    """The models serving sentiment and emotion together; `name` is what analyses store."""

    embedded: EmbeddedBackend
    sentiment: Served
    emotion: Served

    @property
    def name(self) -> str:
        return served_name(self.sentiment.name, self.emotion.name)

    def classifiers(self) -> list[Classifier]:
        return [s.classifier for s in (self.sentiment, self.emotion) if s.classifier is not None]

    def reads(self, language: str) -> bool:
        """Both models are registered for `language`."""
        return language in self.sentiment.languages and language in self.emotion.languages

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        sentiment, emotion = self.sentiment.classifier, self.emotion.classifier
        fixes = (self.sentiment.correction, self.emotion.correction)
        if sentiment is None and emotion is None and fixes == (None, None):
            return self.embedded.predict(texts)  # already named after the embedded model
        own: tuple[list[tuple[Sentiment, float]], list[tuple[Emotion, float]]] = ([], [])
        if None in (sentiment, emotion):  # one encoder pass for whatever the embedded gives
            probabilities, features = self.embedded.encoder.run(texts)
            if fixes[0] is not None:
                probabilities = fixes[0].apply(probabilities, features)
            own = self.embedded.labels(probabilities, features, fixes[1])
        if sentiment is not None:
            sentiments = [(Sentiment(label), p) for label, p in sentiment.predict(texts)]
        else:
            sentiments = own[0]
        if emotion is not None:
            emotions = [(Emotion(label), p) for label, p in emotion.predict(texts)]
        else:
            emotions = own[1]
        if len(sentiments) != len(texts) or len(emotions) != len(texts):
            raise RuntimeError(f"a model gave a wrong number of answers for {len(texts)} texts")
        name = self.name
        return [
            Prediction(sentiment=s, confidence=sp, emotion=e, emotion_confidence=ep, model=name)
            for (s, sp), (e, ep) in zip(sentiments, emotions, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class Routes:
    """The pairs serving now: `default` for `*`, and one per language an activation names."""

    default: ModelSet
    languages: Mapping[str, ModelSet]

    @property
    def name(self) -> str:
        return self.default.name

    @property
    def summary(self) -> str:
        """What serves each language, for the logs: `*: NAME; fr: NAME`."""
        pairs = {ANY_LANGUAGE: self.default, **self.languages}
        return "; ".join(f"{language}: {models.name}" for language, models in pairs.items())

    def reader(self, language: str | None) -> ModelSet | None:
        """The pair that reads `language`, None when none may. No language (None: stored
        before detection) and "und" (too short to tell) go to the `*` pair."""
        if language is None or language == UNDETERMINED:
            return self.default
        models = self.languages.get(language, self.default)
        return models if models.reads(language) else None

    def classifiers(self) -> list[Classifier]:
        """Every imported model loaded, once each (pairs share them)."""
        pairs = (self.default, *self.languages.values())
        found = {id(c): c for models in pairs for c in models.classifiers()}
        return list(found.values())


class ModelLoadFailed(BackendUnavailable):
    """The activated model cannot be loaded; the pair serving now keeps serving."""

    def __init__(self, choice: Choice, reason: str) -> None:
        super().__init__(f"model {choice.name!r} ({choice.task}) failed to load: {reason}")
        self.choice = choice


def load_classifier(settings: Settings, choice: Choice) -> Classifier:
    """The imported model `choice` names, loaded from MODELS_DIR, or ModelLoadFailed saying
    why. Blocking: call it off the event loop."""
    if choice.kind is None:
        raise ModelLoadFailed(choice, "it is not in the registry (`model list`)")
    from sentiment_platform.services.analysis.onnx_classifier import OnnxClassifier

    directory = model_directory(settings, choice.name)
    try:
        classifier = OnnxClassifier(directory, threads=settings.embedded_threads)
    except Exception as exc:  # whatever is wrong with the files, it must not serve
        raise _failed(choice, directory, exc) from exc
    if classifier.task.value != choice.task or classifier.name != choice.name:
        classifier.close()
        raise ModelLoadFailed(
            choice, f"its model.json says {classifier.name!r} for {classifier.task.value}"
        )
    return classifier


def _failed(choice: Choice, directory: Path, exc: Exception) -> ModelLoadFailed:
    # /api/health shows the reason to anyone: MODELS_DIR's place on disk stays out.
    reason = str(exc).replace(str(directory), f"MODELS_DIR/{choice.name}")
    return ModelLoadFailed(choice, " ".join(reason.split())[:500])


def load_correction(settings: Settings, choice: Choice, encoder: Mapping[str, Any]) -> Correction:
    """The correction for `choice.task` of the adapted model `choice` names, checked against
    the embedded encoder's `config.json` (`encoder`), or ModelLoadFailed saying why."""
    directory = model_directory(settings, choice.name)
    labels = {
        Task.SENTIMENT.value: list(encoder["sentiment_labels"]),
        Task.EMOTION.value: list(encoder["emotion_labels"]),
    }
    try:
        model = read_adapted(directory, encoder["name"], labels, int(encoder["feature_size"]))
    except Exception as exc:  # whatever is wrong with the files, it must not serve
        raise _failed(choice, directory, exc) from exc
    if model.name != choice.name or choice.task not in model.heads:
        tasks = " and ".join(model.heads)
        raise ModelLoadFailed(choice, f"its model.json says {model.name!r} for {tasks}")
    return model.heads[choice.task]


def check_loads(settings: Settings, routes: ChoicesByLanguage) -> str | None:
    """Why the imported models `routes` name cannot serve (None: they load), for a process
    that runs no worker (the API in Redis mode) to report what its workers meet."""
    checked: set[tuple[str, str]] = set()
    for choices in routes.values():
        for choice in choices.values():
            if choice.kind == EMBEDDED or (choice.name, choice.task) in checked:
                continue
            checked.add((choice.name, choice.task))
            try:
                if choice.kind == ADAPTED:
                    encoder = json.loads((artifact_files() / "config.json").read_text("utf-8"))
                    load_correction(settings, choice, encoder)
                    continue
                load_classifier(settings, choice).close()
            except ModelLoadFailed as error:
                return str(error)
    return None


class RegistryBackend:
    """Sentiment and emotion from the registry's active models (see the module's docstring)."""

    def __init__(self, settings: Settings, embedded: EmbeddedBackend) -> None:
        self.settings = settings
        self.embedded = embedded
        plain = Served(embedded.name, None)
        self._routes = Routes(ModelSet(embedded, plain, plain), {})
        self.name: str = self._routes.name  # what the chain's logs and status call it
        self.problem: str | None = None  # why the activated set is not the one serving

    @property
    def models(self) -> ModelSet:
        """The `*` pair."""
        return self._routes.default

    @property
    def routes(self) -> Routes:
        return self._routes

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not texts:
            return []
        return self._routes.default.predict(texts)  # one read: the whole batch by one pair

    def reader(self, language: str | None) -> ModelSet | None:
        """The pair that reads `language` (a backend of its own), None when none may."""
        return self._routes.reader(language)

    def load(self, routes: ChoicesByLanguage) -> Routes:
        """The pairs `routes` names ({language or "*": {task: Choice}}), reusing what serves
        now where it is the same model, and loading each imported model once whatever the
        languages it serves. Blocking (it reads and compiles ONNX graphs): call it off the
        event loop. Raises ModelLoadFailed, having closed whatever it loaded."""
        current = self._routes
        pool: dict[tuple[str, str], Served] = {}
        for models in (current.default, *current.languages.values()):
            pool[(Task.SENTIMENT.value, models.sentiment.name)] = models.sentiment
            pool[(Task.EMOTION.value, models.emotion.name)] = models.emotion
        loaded: list[Classifier] = []

        def served(choice: Choice) -> Served:
            key = (choice.task, choice.name)
            if choice.kind == EMBEDDED:
                return Served(self.embedded.name, None, None, frozenset(choice.languages))
            known = pool.get(key)
            loaded_once = known is not None and (known.classifier or known.correction) is not None
            if known is not None and loaded_once and known.same_as(choice):
                return known
            languages = frozenset(choice.languages)
            if choice.kind == ADAPTED:
                correction = load_correction(self.settings, choice, self.embedded.encoder.config)
                pool[key] = Served(choice.name, None, choice.imported_at, languages, correction)
                return pool[key]
            classifier = load_classifier(self.settings, choice)
            loaded.append(classifier)
            pool[key] = Served(
                choice.name, classifier, choice.imported_at, frozenset(choice.languages)
            )
            return pool[key]

        try:
            pairs = {
                language: ModelSet(
                    self.embedded,
                    served(choices[Task.SENTIMENT.value]),
                    served(choices[Task.EMOTION.value]),
                )
                for language, choices in routes.items()
            }
        except BaseException:
            for classifier in loaded:
                classifier.close()
            raise
        default = pairs.pop(ANY_LANGUAGE)
        return Routes(default, pairs)

    def swap(self, routes: Routes) -> None:
        """Serve `routes` from the next batch on (call it between batches) and release the
        imported models no longer used."""
        kept = {id(c) for c in routes.classifiers()}
        old = self._routes
        self._routes = routes
        self.name = routes.name
        self.problem = None
        for classifier in old.classifiers():
            if id(classifier) not in kept:
                classifier.close()

    def discard(self, routes: Routes) -> None:
        """Release a loaded set that will not serve (a newer activation came first)."""
        serving = {id(c) for c in self._routes.classifiers()}
        for classifier in routes.classifiers():
            if id(classifier) not in serving:
                classifier.close()

    def close(self) -> None:
        for classifier in self._routes.classifiers():
            classifier.close()
        self.embedded.close()


def load_registry_backend(settings: Settings) -> RegistryBackend:
    """The `embedded` entry of the chain: the shipped model first; the workers load what the
    registry activated before their first batch."""
    from sentiment_platform.services.analysis.embedded_backend import load_embedded_backend

    return RegistryBackend(settings, load_embedded_backend(settings))
