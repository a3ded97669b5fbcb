"""Which rules a post belongs to: one compiled matcher over every active rule's keywords.

A keyword is a phrase of whole words (`delay` matches "Delay!" and "#delay", not "delays";
`late delivery` matches "LATE   delivery"), case-insensitive. Texts and keywords are cut
into the same tokens (runs of word characters, or single other symbols), and the matcher is
a trie over token sequences (Aho–Corasick over words, without failure links: a phrase is a
handful of tokens, so trying each start position costs a few dictionary lookups). One pass
over a text's tokens finds every keyword of every rule, overlapping ones included. A rule
with no keywords takes every post; a rule with a `source` only that source's posts, one with a
`language` only that language's posts, and a `unique` rule no copy (a post marked
`duplicate_of`, issue 31).

Pure: no I/O. Build it once when the rules change; `match` is what the worker calls per post.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sentiment_platform.rule_spec import normalise_keyword

_TOKEN = re.compile(r"\w+|[^\w\s]")
_END = ""  # the trie key that marks "a phrase ends here"; no token is empty


def tokens(text: str) -> list[str]:
    """The matcher's tokens of a text: lower-cased words and single symbols."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True, slots=True)
class RuleFilter:
    """What the matcher needs of a rule."""

    rule_id: int
    keywords: tuple[str, ...] = ()
    source: str | None = None
    language: str | None = None
    unique: bool = False  # copies are not counted


@dataclass(slots=True)
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    rules: frozenset[int] = frozenset()  # rules whose keyword ends at this node


class Matcher:
    """One matcher over many rules. `Matcher.build(rules)`; then `match(text, source)`."""

    def __init__(
        self,
        root: _Node,
        all_posts: dict[str | None, frozenset[int]],
        sources: dict[int, str | None],
        languages: dict[int, str] | None = None,
        unique: frozenset[int] = frozenset(),
    ) -> None:
        self._root = root
        self._all_posts = all_posts  # rules without keywords, by source (None: any)
        self._sources = sources  # every rule's source filter
        self._languages = languages or {}  # the rules with a language filter
        self._unique = unique  # the rules that do not count copies
        self.rule_ids = frozenset(sources)

    @classmethod
    def build(cls, rules: Iterable[RuleFilter]) -> Matcher:
        root = _Node()
        all_posts: dict[str | None, set[int]] = {}
        sources: dict[int, str | None] = {}
        languages: dict[int, str] = {}
        unique: set[int] = set()
        for rule in rules:
            sources[rule.rule_id] = rule.source
            if rule.language is not None:
                languages[rule.rule_id] = rule.language
            if rule.unique:
                unique.add(rule.rule_id)
            phrases = [tokens(normalise_keyword(k)) for k in rule.keywords]
            phrases = [phrase for phrase in phrases if phrase]
            if not phrases:
                all_posts.setdefault(rule.source, set()).add(rule.rule_id)
                continue
            for phrase in phrases:
                node = root
                for token in phrase:
                    node = node.children.setdefault(token, _Node())
                node.rules = node.rules | {rule.rule_id}
        frozen = {source: frozenset(ids) for source, ids in all_posts.items()}
        return cls(root, frozen, sources, languages, frozenset(unique))

    def __len__(self) -> int:
        return len(self._sources)

    def match(
        self,
        text: str,
        source: str | None = None,
        language: str | None = None,
        copy: bool = False,
    ) -> frozenset[int]:
        """The ids of the rules this post belongs to (`copy`: it is marked `duplicate_of`;
        `language` None: not detected, which no language filter takes)."""
        found: set[int] = set(self._all_posts.get(None, ()))
        if source is not None:
            found.update(self._all_posts.get(source, ()))
        if self._root.children:
            words = tokens(text)
            children = self._root.children
            for start in range(len(words)):
                node = children.get(words[start])
                position = start + 1
                while node is not None:
                    if node.rules:
                        found.update(node.rules)
                    if position >= len(words) or not node.children:
                        break
                    node = node.children.get(words[position])
                    position += 1
        if not found:
            return frozenset()
        return frozenset(
            rule_id
            for rule_id in found
            if self._sources[rule_id] in (None, source)
            and self._languages.get(rule_id, language) == language
            and not (copy and rule_id in self._unique)
        )

    def match_many(self, posts: Sequence[tuple[str, str | None]]) -> list[frozenset[int]]:
        """`match` for each (text, source)."""
        return [self.match(text, source) for text, source in posts]


EMPTY = Matcher.build(())
