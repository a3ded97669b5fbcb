"""Which backends may read a post, by its language (issue 31).

A backend says which languages it reads through an optional `reader(language)`: itself (or a
backend of its own for that language, as the registry's per-language pairs are), or None when
it must not label that language. A backend without `reader` (the LLM, a test's stand-in)
reads every language. The transformers backend's default models are English and read "en".

A post's chain is the configured chain (ANALYZER_BACKENDS) narrowed to the backends that read
its language, in order: the model active for the language, then the LLM fallback. An empty
chain leaves the post unanalysed ("unsupported_language"), unless `UNSUPPORTED_LANGUAGES=english`,
which gives such a post the chain an English post gets (what every post got before
languages were detected). Posts of no known language (None: stored before detection; "und":
too short or unclear to tell) are offered to every backend's default, which reads them:
they carry no language a model could misread ("ok", "😂😂", a bare link).

Languages whose chains are the same (the same readers, in order) are analysed together, so
a batch costs one model call per distinct chain, not per language.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sentiment_platform.domain import Prediction

ENGLISH = "en"


class Reader(Protocol):
    """A backend (or a backend's per-language part) as the chain calls it."""

    @property
    def name(self) -> str: ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


Chain = list[tuple[int, Reader]]  # (position in the configured chain, what reads there)


def reader_of(backend: Reader, language: str | None) -> Reader | None:
    """What of `backend` reads `language`: the backend, a part of it, or None."""
    reader = getattr(backend, "reader", None)
    if reader is None:
        return backend
    found: Reader | None = reader(language)
    return found


def chain_for(backends: Sequence[Reader], language: str | None) -> Chain:
    """The configured chain narrowed to what reads `language`, in order."""
    chain: Chain = []
    for position, backend in enumerate(backends):
        reader = reader_of(backend, language)
        if reader is not None:
            chain.append((position, reader))
    return chain


def plan(
    backends: Sequence[Reader], languages: Sequence[str | None], english: bool
) -> list[tuple[Chain, list[int]]]:
    """The batch's posts (by index) grouped by the chain that reads them; posts no chain
    reads are in no group. `english`: such posts go to an English post's chain instead."""
    by_language: dict[str | None, list[int]] = {}
    for index, language in enumerate(languages):
        by_language.setdefault(language, []).append(index)
    groups: dict[tuple[int, ...], tuple[Chain, list[int]]] = {}
    for language, indices in by_language.items():
        chain = chain_for(backends, language)
        if not chain and english:
            chain = chain_for(backends, ENGLISH)
        if chain:
            key = tuple(id(reader) for _, reader in chain)
            groups.setdefault(key, (chain, []))[1].extend(indices)
    return [(chain, sorted(indices)) for chain, indices in groups.values()]
