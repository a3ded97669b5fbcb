"""Trust the number: how close each share estimator comes on shifted sets, and how often
its 95 % interval holds the truth.

Sets (from ../shared/data; see each folder's SOURCE.md for origin and licence):
- GoEmotions-Ekman dev as sentiment (Demszky et al., ACL 2020): Reddit comments, joy
  positive; anger (disgust included), sadness, fear negative; neutral neutral; surprise
  rows and multi-label rows left out (`training.data.emotions_as_sentiment`, the mapping
  training uses).
- TweetEval sentiment val (Barbieri et al., Findings of EMNLP 2020; SemEval-2017 task 4)
  as it is, and subsampled without replacement to 10 %, 33 % and 50 % negative
  (`training.data.resample_negative`, seed 16: the model card's shifted sets).

Each set is predicted once by the shipped embedded model (batches of 256, as `evaluate`
does) and the probabilities cached in /tmp. Then, per n, `--repeats` times: n posts drawn
uniformly **with replacement** from the set (iid draws from the feed, so n may exceed a
small set), their (label, prediction) pairs counted, and every estimator of
`services/analysis/estimation.py` and `estimation_acc.py` run on the set's counts plus
that sample (n_min 1: this measures the methods, not the platform's threshold). The
truth is the set's own shares. Reported: mean largest share error in points (max over
the three classes of |estimate − truth|), and coverage: the fraction of repetitions where
the class's interval holds the truth (the lowest of the three classes, and all three at
once), with the mean half-width of the intervals.

Then adaptation (`benchmarks/adaptation.py`): `adapt`'s macro-recall gain on the unlabelled
rest of each shifted set (and of UMSAB Hindi, a set the model never saw) for 500 and 1,000
random labels, `--adapt-repeats` times, and `adapt`'s wall time for 1,000 labels.

    .venv/bin/python benchmarks/trust.py [--repeats 200] [--sizes 100 200 500 1000]
        [--adapt-repeats 5] [--adapt-sizes 500 1000] [--no-estimates] [--no-adapt]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from adaptation import report_gains, report_time, shifted_extra  # benchmarks/adaptation.py
from model import cpu_description  # benchmarks/model.py

from sentiment_platform.config import Settings
from sentiment_platform.services.analysis import estimation, estimation_acc
from sentiment_platform.services.analysis.embedded_backend import load_embedded_backend
from sentiment_platform.training.data import (
    SENTIMENT_LABELS,
    Split,
    emotions_as_sentiment,
    load_sentiment,
    resample_negative,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CACHE = Path("/tmp/trust-predictions")
BATCH = 256
SHIFTED = ("goemotions", "val 10 % neg", "val 33 % neg", "val 50 % neg")
TARGET_ERROR, TARGET_COVERAGE, TARGET_N = 3.0, 0.90, 500
Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # labels, predictions, probabilities


def build_sets(data: Path) -> dict[str, Split]:
    val = load_sentiment(data / "tweeteval" / "sentiment", "val")
    return {
        "val (as is)": val,
        "goemotions": emotions_as_sentiment(data / "goemotions_ekman", "dev"),
        **{f"val {round(100 * s)} % neg": resample_negative(val, s) for s in (0.10, 0.33, 0.50)},
    }


def predict(split: Split) -> tuple[str, np.ndarray]:
    """(model name, probabilities n×3 in SENTIMENT_LABELS order), cached by text."""
    backend = _backend()
    labels = tuple(backend.encoder.sentiment_labels)
    if labels != SENTIMENT_LABELS:
        raise SystemExit(f"model outputs {labels}, expected {SENTIMENT_LABELS}")
    digest = hashlib.sha256("\n".join(split.texts).encode()).hexdigest()[:16]
    path = CACHE / f"{backend.name.replace('/', '_')}-{digest}.npy"
    if path.exists():
        print(f"(predictions read from {path})")
        return backend.name, np.load(path)
    parts = [
        backend.encoder.run(split.texts[i : i + BATCH])[0]
        for i in range(0, len(split.texts), BATCH)
    ]
    probabilities = np.concatenate(parts).astype(float)
    CACHE.mkdir(exist_ok=True)
    np.save(path, probabilities)
    print(f"(predicted now, cached in {path})")
    return backend.name, probabilities


_BACKEND: list = []


def _backend():  # type: ignore[no-untyped-def]
    if not _BACKEND:
        _BACKEND.append(load_embedded_backend(Settings()))
    return _BACKEND[0]


Method = Callable[[np.ndarray, np.ndarray, Sample], estimation.Estimate]
METHODS: dict[str, Method] = {
    "counted (no labels)": lambda counts, sums, s: estimation.counted_estimate(counts),
    "labels alone": lambda counts, sums, s: estimation.sample_estimate(
        estimation.confusion_counts(s[0], s[1], 3), n_min=1
    ),
    "difference (PPI)": lambda counts, sums, s: estimation.difference_estimate(
        counts, estimation.confusion_counts(s[0], s[1], 3), n_min=1
    ),
    "stratified": lambda counts, sums, s: estimation.stratified_estimate(
        counts, estimation.confusion_counts(s[0], s[1], 3), n_min=1
    ),
    "ACC, in-domain": lambda counts, sums, s: estimation_acc.acc_estimate(
        counts, estimation.confusion_counts(s[0], s[1], 3), n_min=1, seed=int(s[1].sum())
    ),
    "PACC, in-domain": lambda counts, sums, s: estimation_acc.pacc_estimate(
        sums, s[0], s[2], n_min=1, seed=int(s[1].sum())
    ),
}


def simulate(
    truth_labels: np.ndarray, probabilities: np.ndarray, n: int, repeats: int, seed: int
) -> dict[str, tuple[float, float, float, float]]:
    """Per method: (mean largest error in points, lowest per-class coverage, joint
    coverage, mean interval width in points); coverage NaN where there is no interval."""
    predictions = probabilities.argmax(axis=1)
    counts = np.bincount(predictions, minlength=3)
    sums = probabilities.sum(axis=0)
    truth = np.bincount(truth_labels, minlength=3) / truth_labels.size
    rng = np.random.default_rng(seed)
    errors = {name: [] for name in METHODS}
    covered: dict[str, list[np.ndarray]] = {name: [] for name in METHODS}
    widths: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(repeats):
        rows = rng.integers(0, truth_labels.size, n)
        sample = (truth_labels[rows], predictions[rows], probabilities[rows])
        for name, method in METHODS.items():
            result = method(counts, sums, sample)
            assert result.shares is not None
            errors[name].append(100 * float(np.abs(np.array(result.shares) - truth).max()))
            if result.intervals is not None:
                bounds = np.array(result.intervals)
                covered[name].append((bounds[:, 0] <= truth) & (truth <= bounds[:, 1]))
                widths[name].append(100 * float((bounds[:, 1] - bounds[:, 0]).mean()))
    out = {}
    for name in METHODS:
        hits = np.array(covered[name]) if covered[name] else None
        out[name] = (
            float(np.mean(errors[name])),
            float(hits.mean(axis=0).min()) if hits is not None else float("nan"),
            float(hits.all(axis=1).mean()) if hits is not None else float("nan"),
            float(np.mean(widths[name])) if widths[name] else float("nan"),
        )
    return out


def _cell(figures: tuple[float, float, float, float]) -> str:
    error, coverage, joint, width = figures
    if np.isnan(coverage):
        return f"{error:5.2f} / —"
    return f"{error:5.2f} / {100 * coverage:3.0f} / {100 * joint:3.0f} % ±{width / 2:4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DATA, help="shared/data (default ../shared/data)"
    )
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 1000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adapt-repeats", type=int, default=5)
    parser.add_argument("--adapt-sizes", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--no-estimates", action="store_true", help="adaptation only")
    parser.add_argument("--no-adapt", action="store_true", help="estimates only")
    args = parser.parse_args()
    print("command: python benchmarks/trust.py " + " ".join(sys.argv[1:]))
    print(cpu_description(), f"; load average {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    sets = build_sets(args.data)
    if not args.no_estimates:
        estimates(sets, args)
    if not args.no_adapt:
        shifted = {name: sets[name] for name in SHIFTED} | shifted_extra(args.data)
        report_gains(shifted, args.data, args.adapt_sizes, args.adapt_repeats, args.seed)
        report_time(sets["goemotions"])
    print(f"({time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f})")


def estimates(sets: dict[str, Split], args: argparse.Namespace) -> None:
    verdicts = []
    for name, split in sets.items():
        model, probabilities = predict(split)
        truth = np.array([SENTIMENT_LABELS.index(label) for label in split.hard_labels()])
        true_share = np.bincount(truth, minlength=3) / truth.size
        print(
            f"\n## {name}: {truth.size:,} posts, true neg / neu / pos "
            + " / ".join(f"{100 * s:.1f}" for s in true_share)
            + f" %, model {model}"
        )
        print(
            "cells: mean largest share error (points) / lowest class coverage / all three "
            "covered (%) ±mean half-width (points)"
        )
        table = {
            n: simulate(truth, probabilities, n, args.repeats, args.seed + n) for n in args.sizes
        }
        print("| method | " + " | ".join(f"n = {n:,}" for n in args.sizes) + " |")
        print("|---|" + "---|" * len(args.sizes))
        for method in METHODS:
            print(f"| {method} | " + " | ".join(_cell(table[n][method]) for n in args.sizes) + " |")
        if name in SHIFTED and TARGET_N in table:
            verdicts.append((name, table[TARGET_N]))
    print(
        f"\n## targets at n = {TARGET_N} (error ≤ {TARGET_ERROR:g} points, each class's "
        f"interval covering ≥ {100 * TARGET_COVERAGE:.0f} %)"
    )
    for name, figures in verdicts:
        for method in ("difference (PPI)", "stratified", "ACC, in-domain", "PACC, in-domain"):
            error, coverage, joint, _ = figures[method]
            met = error <= TARGET_ERROR and coverage >= TARGET_COVERAGE
            print(
                f"- {name}, {method}: error {error:.2f}, coverage {100 * coverage:.1f} % "
                f"(all three {100 * joint:.1f} %): {'met' if met else 'MISSED'}"
            )


if __name__ == "__main__":
    main()
