"""What `ALERT_ON=estimated` watches: a rule's negative share estimated as `/api/metrics`
estimates it, from the random labels, where the model scoring posts now has enough of them.

The labels: the random labels of the last REFERENCE_DAYS days (by their post's
`created_at`, every source, draws covering those days; the label rollups' day cells), on the
predictions of the model of the newest analysis. With at least `MIN_ESTIMATE_LABELS` of them,
a window's share is the stratified estimate (`reporting.estimates.estimate_from`, the
metrics' estimator): the window's counts per predicted class, each split by what the
labelled posts the model put in that class turned out to be. With fewer, today's behaviour:
the shipped confusion matrix undone (label shift assumed), or the count where none ships.
The alert's details say which (`estimate_method`, `estimate_labels`, `estimate_model`).

Why a reference period and not the window's own labels: an alert window is minutes, and a
few minutes hold almost no random labels. The correction measured over the feed's last days
is applied to the window's counts, which assumes the model is as right in the window (and
on a rule's keyword-matched posts) as over the feed. Read once a check, two small reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store, timegrain
from sentiment_platform.domain import Sentiment
from sentiment_platform.services.analysis.quantification import Confusion
from sentiment_platform.services.reporting.estimates import estimate_from, random_confusion
from sentiment_platform.timegrain import Grain

REFERENCE_DAYS = 30


@dataclass(frozen=True)
class Estimator:
    """The reference labels' confusion on `model`'s predictions, and what to fall back to."""

    model: str | None
    confusion: np.ndarray
    min_labels: int
    shipped: Confusion | None

    def negative_share(self, counts: Mapping[str, int]) -> tuple[float | None, dict[str, Any]]:
        """The window's estimated negative share (None: counted, nothing to correct with)
        and the facts an alert's details record about it."""
        estimate = estimate_from(
            counts, self.confusion, self.model, min_labels=self.min_labels, shipped=self.shipped
        )
        facts = {
            "alert_on": "estimated",
            "estimate_method": estimate.info.method,
            "estimate_labels": estimate.info.labels,
            "estimate_model": estimate.info.model,
            "estimate_reference_days": REFERENCE_DAYS,
        }
        if estimate.shares is None:
            return None, facts
        return estimate.shares[Sentiment.NEGATIVE], facts


async def load_estimator(
    session: AsyncSession, now: datetime, *, min_labels: int, shipped: Confusion | None
) -> Estimator:
    """The estimator for a check at `now`: the newest analysis's model and its random labels
    over the REFERENCE_DAYS days up to the end of today."""
    until = timegrain.next_start(Grain.DAY, timegrain.floor(Grain.DAY, now))
    since = until - timedelta(days=REFERENCE_DAYS)
    model = await store.newest_model(session)
    cells = await store.random_labels(session, since, until) if model is not None else {}
    return Estimator(model, random_confusion(cells, model), min_labels, shipped)
