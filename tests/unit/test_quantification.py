"""Adjusted classify-and-count: shares with a model's known confusion undone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentiment_platform.config import Settings
from sentiment_platform.domain import Sentiment
from sentiment_platform.services.analysis.embedded_backend import load_embedded_backend
from sentiment_platform.services.analysis.quantification import (
    adjusted_shares,
    confusion_from_config,
    load_confusion,
)

NEG, NEU, POS = Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE
# A model that calls a fifth of neutral posts negative (P(predicted | true)).
CONFUSION = {
    NEG: {NEG: 0.8, NEU: 0.15, POS: 0.05},
    NEU: {NEG: 0.2, NEU: 0.7, POS: 0.1},
    POS: {NEG: 0.05, NEU: 0.2, POS: 0.75},
}


def _counted(true: dict[Sentiment, int]) -> dict[Sentiment, int]:
    """What the model would count for these true numbers (exact, no sampling noise)."""
    return {p: round(sum(n * CONFUSION[t][p] for t, n in true.items())) for p in (NEG, NEU, POS)}


def test_undoes_a_known_confusion() -> None:
    true = {NEG: 2000, NEU: 5000, POS: 3000}
    counted = _counted(true)
    assert counted[NEG] / 10_000 == pytest.approx(0.275)  # the raw count overstates negative
    shares = adjusted_shares(counted, CONFUSION)
    for sentiment, n in true.items():
        assert shares[sentiment] == pytest.approx(n / 10_000, abs=1e-9)


def test_follows_a_change_of_mix() -> None:
    """Label shift: the same model on a feed that is half negative."""
    true = {NEG: 5000, NEU: 3000, POS: 2000}
    shares = adjusted_shares(_counted(true), CONFUSION)
    assert shares[NEG] == pytest.approx(0.5, abs=1e-9)


def test_linear_in_the_counts_so_rollups_add_up() -> None:
    a = {NEG: 120, NEU: 300, POS: 180}
    b = {NEG: 40, NEU: 500, POS: 60}
    total = {s: a[s] + b[s] for s in a}
    doubled = {s: 2 * n for s, n in total.items()}
    assert adjusted_shares(doubled, CONFUSION) == pytest.approx(adjusted_shares(total, CONFUSION))


def test_identity_confusion_is_the_plain_count() -> None:
    identity = {t: {p: float(t == p) for p in Sentiment} for t in Sentiment}
    shares = adjusted_shares({NEG: 1, NEU: 2, POS: 1}, identity)
    assert shares == {NEG: 0.25, NEU: 0.5, POS: 0.25}


def test_clipped_to_shares_that_sum_to_one() -> None:
    """Counts the matrix cannot produce (fewer negatives than its floor) give no negative share."""
    shares = adjusted_shares({NEG: 0, NEU: 50, POS: 50}, CONFUSION)
    assert all(0.0 <= v <= 1.0 for v in shares.values())
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares[NEG] == 0.0


def test_missing_sentiments_count_zero_and_no_posts_give_zeros() -> None:
    assert sum(adjusted_shares({NEU: 10}, CONFUSION).values()) == pytest.approx(1.0)
    assert adjusted_shares({}, CONFUSION) == {NEG: 0.0, NEU: 0.0, POS: 0.0}


def test_singular_matrix_still_answers() -> None:
    blind = {t: {NEG: 1 / 3, NEU: 1 / 3, POS: 1 / 3} for t in Sentiment}
    shares = adjusted_shares({NEG: 3, NEU: 3, POS: 4}, blind)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_bad_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="no row for"):
        adjusted_shares({NEG: 1}, {NEG: CONFUSION[NEG]})
    with pytest.raises(ValueError, match="sum to 1"):
        adjusted_shares({NEG: 1}, CONFUSION | {POS: {NEG: 0.5, NEU: 0.2, POS: 0.1}})
    with pytest.raises(ValueError, match="negative"):
        adjusted_shares({NEG: -1, NEU: 3}, CONFUSION)


def test_the_shipped_model_ships_its_confusion() -> None:
    confusion = load_confusion()
    assert confusion is not None and set(confusion) == set(Sentiment)
    for row in confusion.values():
        assert set(row) == set(Sentiment)
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-3)
        assert max(row, key=row.__getitem__) in confusion  # each row's mode is a label
    for sentiment in Sentiment:  # better than chance at every class
        assert confusion[sentiment][sentiment] > 0.5
    backend = load_embedded_backend(Settings(), threads=1)
    try:
        assert backend.confusion == confusion
    finally:
        backend.close()


def test_a_model_without_a_matrix_has_none(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"name": "embedded/old"}))
    assert load_confusion(tmp_path) is None
    assert confusion_from_config({"sentiment_confusion": None}) is None
