"""The producers behind `ingest demo`, `ingest file` and `serve --demo`.

They publish to anything with the bus's `publish(posts)`: the bus itself (Redis mode, or
in-process for `serve --demo`) or `ApiPublisher`, which posts to a running API (how a
separate `ingest` process reaches the embedded in-process bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from sentiment_platform.config import Settings
from sentiment_platform.domain import MAX_BATCH_POSTS, Post
from sentiment_platform.runtime import open_runtime

log = logging.getLogger(__name__)

SEND_BATCH = 500
RATE_LIMIT_RETRIES = 60


class Publisher(Protocol):
    async def publish(self, posts: Sequence[Post]) -> list[str]: ...


@contextlib.asynccontextmanager
async def publisher_for(settings: Settings, api_url: str | None = None) -> AsyncIterator[Publisher]:
    """Redis mode: straight onto the stream. Embedded (or `api_url` given): through the API,
    since the in-process bus lives inside the `serve` process."""
    if api_url is None and settings.uses_redis:
        async with open_runtime(settings) as runtime:
            yield runtime.bus
        return
    key = settings.api_keys[0].get_secret_value() if settings.api_keys else None
    api = ApiPublisher(api_url or f"http://{settings.api_host}:{settings.api_port}", key)
    try:
        yield api
    finally:
        await api.aclose()


class ApiPublisher:
    """POST /api/posts on a running API, up to its 1000-per-request limit; waits out its
    rate limit (429 + Retry-After) instead of failing."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(posts), MAX_BATCH_POSTS):
            body = [post.model_dump(mode="json") for post in posts[start : start + MAX_BATCH_POSTS]]
            response = await self._post(body)
            for _ in range(RATE_LIMIT_RETRIES):
                if response.status_code != 429:
                    break
                wait_s = float(response.headers.get("Retry-After", "1"))
                log.info("API rate limit reached, waiting seconds=%.0f", wait_s)
                await asyncio.sleep(wait_s)
                response = await self._post(body)
            if response.status_code != 202:
                raise RuntimeError(
                    f"the API refused posts ({response.status_code}): {response.text}"
                )
            ids.extend(response.json()["post_ids"])
        return ids

    async def _post(self, body: list[dict[str, Any]]) -> httpx.Response:
        try:
            return await self._client.post("/api/posts", json=body)
        except httpx.TransportError as error:
            raise RuntimeError(
                f"cannot reach the API at {self.base_url} ({type(error).__name__}); "
                "is `sentiment-platform serve` running?"
            ) from error

    async def aclose(self) -> None:
        await self._client.aclose()


# --- the demo generator --------------------------------------------------------------------
# Fictional brands, places and handles only: no real people's data.

SUBJECTS: dict[str, tuple[str, ...]] = {
    "device": (
        "the Nimbus X2 phone",
        "my Lumen earbuds",
        "the Orbit smartwatch",
        "the Kestrel 14 laptop",
        "the Velo e-bike",
        "the Atlas 5 game console",
    ),
    "service": (
        "the Harbor Bank app",
        "StreamBox",
        "the QuickCart delivery app",
        "Fernway Internet",
        "the Solace meditation app",
        "Cobalt Cloud storage",
        "Tidewater Energy",
    ),
    "place": (
        "Pinecrest Coffee",
        "Maple Street Bakery",
        "the Crescent Hotel",
        "Brightside Pharmacy",
        "the Juniper food truck",
        "the Riverside library",
    ),
    "travel": ("Skyline Air", "Northwind Rail", "the route 12 bus", "Bluefin Ferries"),
}
REVIEW_VERB = {
    "device": "bought",
    "service": "signed up for",
    "place": "visited",
    "travel": "travelled with",
}
GENERIC_PHRASES: dict[str, tuple[str, ...]] = {
    "positive": (
        "exceeded my expectations",
        "was worth every penny",
        "made my whole morning",
        "keeps getting better",
        "is honestly the best in its class",
    ),
    "negative": (
        "is a complete waste of money",
        "doubled the price without telling anyone",
        "hung up on me twice",
        "ignored three of my complaints",
    ),
    "neutral": (
        "is running a customer survey this week",
        "will be discussed at the community meeting",
        "published its quarterly report",
    ),
}
PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "device": {
        "positive": (
            "works flawlessly",
            "has a battery that lasts for days",
            "arrived a day early and well packed",
            "survived a drop on concrete",
        ),
        "negative": (
            "keeps crashing every time I open the camera",
            "dies before lunch",
            "arrived broken and nobody answers emails",
            "overheats after ten minutes",
        ),
        "neutral": ("comes in three colours now", "is getting a software update on Tuesday"),
    },
    "service": {
        "positive": (
            "finally fixed the sync issue",
            "sorted my problem out in five minutes",
            "has the cleanest interface I have used",
        ),
        "negative": (
            "has been down for hours",
            "charged me twice for one order",
            "wiped all my saved settings",
            "logged me out again and lost my data",
        ),
        "neutral": (
            "announced a new pricing plan",
            "switched to a new payment provider",
            "has a maintenance window tonight",
        ),
    },
    "place": {
        "positive": (
            "has the friendliest staff in town",
            "makes the best cinnamon rolls around",
            "was spotless and quiet",
        ),
        "negative": (
            "got my order wrong three times",
            "had a forty-minute queue and rude staff",
            "was filthy and overpriced",
        ),
        "neutral": (
            "changed its opening hours",
            "moved to a new address downtown",
            "is closed on Monday for an inspection",
        ),
    },
    "travel": {
        "positive": (
            "got me there twenty minutes early",
            "had comfy seats and free wifi",
            "rebooked me in two minutes",
        ),
        "negative": (
            "is delayed again with no explanation",
            "lost my luggage and blamed me",
            "cancelled my trip at the gate",
        ),
        "neutral": ("is changing its timetable next month", "added a stop at the new station"),
    },
}
HEADLINES = {
    "positive": (
        "{Brand} shares climb after record quarter",
        "{Brand} wins customer service award in {city}",
        "{Brand} expands free service to rural {city}",
    ),
    "negative": (
        "{Brand} outage leaves thousands without service in {city}",
        "Regulators open probe into {Brand} billing errors",
        "{Brand} recalls devices over overheating reports",
    ),
    "neutral": (
        "{Brand} to open new office in {city}",
        "{Brand} names new head of operations",
        "{Brand} schedules annual meeting for next month",
    ),
}
CUES = {
    "joy": ("So happy right now!", "Love it.", "Made my day 😊", "Couldn't be happier."),
    "sadness": ("Honestly just disappointed.", "Feeling let down 😞", "Kind of heartbreaking."),
    "anger": ("Absolutely furious.", "Unacceptable.", "This is ridiculous 😡", "Never again."),
    "fear": ("Worried my data got leaked.", "Kind of scared to use it now.", "Nervous about this."),
    "surprise": ("Did not see that coming!", "Wow, genuinely surprised.", "Wait, what?!"),
    "neutral": ("", "Details below.", "More info later.", "FYI."),
}
EMOTIONS_FOR = {
    "positive": ("joy", "joy", "surprise"),
    "negative": ("anger", "anger", "sadness", "fear"),
    "neutral": ("neutral", "neutral", "surprise"),
}
CITIES = ("Lisbon", "Denver", "Osaka", "Leeds", "Porto Alegre", "Tallinn", "Perth", "Ottawa")
OUTLETS = ("The Daily Ledger", "Metro Wire", "Harbor Times", "Valley Courier", "Signal News")
HANDLE_WORDS = (
    ("quiet", "sunny", "lazy", "brave", "tiny", "urban", "salty", "rusty", "cosmic", "mellow"),
    ("otter", "falcon", "maple", "pixel", "badger", "comet", "tulip", "walrus", "cactus", "fox"),
)
TIMEFRAMES = ("yesterday", "this morning", "last week", "two days ago", "tonight", "at 3am")
HASHTAGS = {
    "positive": ("#win", "#recommend", "#happycustomer", "#tech"),
    "negative": ("#fail", "#mondays", "#customerservice", "#neveragain"),
    "neutral": ("#news", "#update", "#fyi", "#local"),
}


@dataclass
class DemoGenerator:
    """Varied, realistic posts over several sources; `negative_ratio` of them negative."""

    negative_ratio: float = 0.2
    seed: int | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.negative_ratio <= 1.0:
            raise ValueError("negative_ratio must be between 0 and 1")
        self.rng = random.Random(self.seed)

    def posts(self, count: int) -> list[Post]:
        return [self.post() for _ in range(count)]

    def post(self) -> Post:
        rng = self.rng
        if rng.random() < self.negative_ratio:
            sentiment = "negative"
        else:
            sentiment = rng.choice(("positive", "positive", "neutral"))
        emotion = rng.choice(EMOTIONS_FOR[sentiment])
        source = rng.choice(("twitter", "twitter", "reddit", "news", "reviews", "forum"))
        content, author = getattr(self, f"_{source}")(sentiment, emotion)
        return Post(source=source, content=" ".join(content.split()), author=author)

    def _pick(self, sentiment: str, emotion: str) -> tuple[str, str, str, str]:
        """A subject, something said about it that fits its kind, an emotional cue, the kind."""
        rng = self.rng
        kind = rng.choice(tuple(SUBJECTS))
        phrases = PHRASES[kind][sentiment] + GENERIC_PHRASES[sentiment]
        return rng.choice(SUBJECTS[kind]), rng.choice(phrases), rng.choice(CUES[emotion]), kind

    def _handle(self) -> str:
        adjective, noun = (self.rng.choice(words) for words in HANDLE_WORDS)
        return f"{adjective}_{noun}{self.rng.randint(1, 999)}"

    def _twitter(self, sentiment: str, emotion: str) -> tuple[str, str]:
        subject, phrase, cue, _ = self._pick(sentiment, emotion)
        tag = self.rng.choice(HASHTAGS[sentiment])
        text = self.rng.choice(
            (
                f"{_capital(subject)} {phrase}. {cue} {tag}",
                f"{cue} {subject} {phrase} {self.rng.choice(TIMEFRAMES)} {tag}",
                f"@{self._handle()} {subject} {phrase}?? {cue}",
            )
        )
        return text, self._handle()

    def _reddit(self, sentiment: str, emotion: str) -> tuple[str, str]:
        subject, phrase, cue, _ = self._pick(sentiment, emotion)
        when = self.rng.choice(TIMEFRAMES)
        text = self.rng.choice(
            (
                f"PSA: {subject} {phrase}. {cue} Anyone else seeing this?",
                f"Update on my post from {when}: {subject} {phrase}. {cue}",
                f"Is it just me or {subject} {phrase}? {cue} Using it for "
                f"{self.rng.randint(2, 30)} weeks now.",
            )
        )
        return text, f"u/{self._handle()}"

    def _news(self, sentiment: str, emotion: str) -> tuple[str, str]:
        kind = self.rng.choice(tuple(SUBJECTS))
        brand = self.rng.choice(SUBJECTS[kind]).removeprefix("the ").removeprefix("my ")
        headline = self.rng.choice(HEADLINES[sentiment])
        text = headline.format(Brand=_capital(brand), city=self.rng.choice(CITIES))
        return text, self.rng.choice(OUTLETS)

    def _reviews(self, sentiment: str, emotion: str) -> tuple[str, str]:
        subject, phrase, cue, kind = self._pick(sentiment, emotion)
        stars = {"positive": (4, 5), "negative": (1, 2), "neutral": (3, 3)}[sentiment]
        text = (
            f"{self.rng.randint(*stars)}/5 — {REVIEW_VERB[kind]} {subject} "
            f"{self.rng.choice(TIMEFRAMES)}. "
            f"It {phrase}. {cue}"
        )
        return text, self._handle()

    def _forum(self, sentiment: str, emotion: str) -> tuple[str, str]:
        subject, phrase, cue, _ = self._pick(sentiment, emotion)
        opener = self.rng.choice(("Has anyone else tried", "Quick question about", "Thoughts on"))
        return f"{opener} {subject}? In my experience it {phrase}. {cue}", self._handle()


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


async def run_demo(
    publisher: Publisher,
    count: int | None,
    rate: float | None,
    negative_ratio: float,
    stop: asyncio.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Publish `count` generated posts (None: until `stop`) at `rate` posts/s (None: at once);
    `progress` is called with the size of each batch sent.

    Paced against the start time, so a slow publish is caught up instead of drifting.
    """
    stop = stop or asyncio.Event()
    generator = DemoGenerator(negative_ratio)
    chunk = SEND_BATCH if rate is None else max(1, min(SEND_BATCH, int(rate / 10)))
    started = time.monotonic()
    sent = 0
    while (count is None or sent < count) and not stop.is_set():
        size = chunk if count is None else min(chunk, count - sent)
        await publisher.publish(generator.posts(size))
        sent += size
        if progress is not None:
            progress(size)
        if rate is not None:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
    log.info("demo posts published count=%d seconds=%.1f", sent, time.monotonic() - started)
    return sent


DEMO_RATE = 20.0  # posts/s: lively on a dashboard, light on a laptop
# (negative ratio, seconds): four calm minutes, then a four-minute storm. Over the default
# five-minute window the negative share crosses 0.4 some two to three minutes into the storm
# (the alert fires) and falls back under 0.35 about three minutes into the calm (it resolves).
DEMO_PHASES = ((0.1, 240.0), (0.8, 240.0))


async def feed_demo(publisher: Publisher, stop: asyncio.Event) -> None:
    """`serve --demo`: generated posts until `stop`, the negative ratio moving in phases."""
    while not stop.is_set():
        for negative_ratio, seconds in DEMO_PHASES:
            if stop.is_set():
                return
            await run_demo(publisher, int(DEMO_RATE * seconds), DEMO_RATE, negative_ratio, stop)


# --- file replay ---------------------------------------------------------------------------

OPTIONAL_FIELDS = ("post_id", "author", "created_at")


@dataclass
class FileReport:
    sent: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)


def read_rows(path: Path, default_source: str | None = None) -> Iterator[tuple[int, Post | str]]:
    """(line number, post) for each good row, (line number, why) for each bad one.

    `.csv` is read as CSV with a header row; anything else as JSON Lines.
    """
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    for line, row in rows:
        if isinstance(row, str):
            yield line, row
            continue
        yield line, _to_post(row, default_source)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                yield number, f"not valid JSON ({error.msg} at column {error.colno})"
                continue
            yield number, row if isinstance(row, dict) else "a JSON object was expected"


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        first_line = reader.line_num + 1
        for row in reader:
            if None in row:
                yield first_line, "more values than header columns"
            else:
                yield first_line, dict(row)
            first_line = reader.line_num + 1


def _to_post(row: dict[str, Any], default_source: str | None) -> Post | str:
    row = {key.strip(): value for key, value in row.items() if isinstance(key, str)}
    for name in OPTIONAL_FIELDS:  # an empty CSV cell means "not given"
        if row.get(name) in ("", None):
            row.pop(name, None)
    if default_source and not row.get("source"):
        row["source"] = default_source
    try:
        return Post.model_validate(row)
    except ValidationError as error:
        return "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'row'}: {problem['msg']}"
            for problem in error.errors()
        )


async def ingest_file(
    path: Path,
    publisher: Publisher,
    default_source: str | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = SEND_BATCH,
) -> FileReport:
    """Send the good rows in batches; the bad ones are skipped and reported by line number.

    `progress` is called with the line number reached after each row.
    """
    report = FileReport()
    batch: list[Post] = []
    for line, result in read_rows(path, default_source):
        if isinstance(result, str):
            report.bad.append((line, result))
        else:
            batch.append(result)
            if len(batch) >= batch_size:
                await publisher.publish(batch)
                report.sent += len(batch)
                batch = []
        if progress is not None:
            progress(line)
    if batch:
        await publisher.publish(batch)
        report.sent += len(batch)
    log.info("file ingested path=%s sent=%d bad=%d", path, report.sent, len(report.bad))
    return report
