"""The demo generator behind `ingest demo` and `serve --demo`: varied, realistic posts over
several sources, published at a steady rate to anything with the bus's `publish(posts)`.

Fictional brands, places and handles only: no real people's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sentiment_platform.domain import Post
from sentiment_platform.pipeline.ingester import SEND_BATCH, Publisher

log = logging.getLogger(__name__)

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
    log.info(
        "demo posts published",
        extra={
            "event": "ingest.demo_done",
            "count": sent,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
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
