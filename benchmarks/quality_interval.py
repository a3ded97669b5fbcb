"""How often `GET /api/quality`'s 95 % macro-recall interval holds the truth (issue 30).

Simulated labelled samples of a model with known per-class recall (class priors and recalls
below, the wrong predictions spread evenly over the other classes); for each, the interval
the platform gives (`services/trust/quality.macro_recall_interval`: a Jeffreys posterior
per class, combined by simulation) and, for comparison, a percentile bootstrap over the
labelled posts. Prints the share of samples whose interval held the true macro-recall.

    .venv/bin/python benchmarks/quality_interval.py --repetitions 400
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sentiment_platform.services.trust.quality import macro_recall_interval

CASES = [  # (class priors, per-class recall, labels)
    ((0.32, 0.48, 0.20), (0.70, 0.65, 0.75), 30),
    ((0.32, 0.48, 0.20), (0.70, 0.65, 0.75), 100),
    ((0.32, 0.48, 0.20), (0.70, 0.65, 0.75), 500),
    ((0.10, 0.60, 0.30), (0.90, 0.80, 0.95), 50),
    ((0.10, 0.60, 0.30), (0.97, 0.90, 0.99), 200),
]


def sample(rng: np.random.Generator, prior, recall, n: int) -> np.ndarray:
    """A 3×3 [label, prediction] count matrix of n random labels."""
    matrix = np.zeros((3, 3), dtype=np.int64)
    labels = rng.choice(3, size=n, p=prior)
    right = rng.random(n) < np.asarray(recall)[labels]
    wrong = (labels + 1 + rng.integers(2, size=n)) % 3
    np.add.at(matrix, (labels, np.where(right, labels, wrong)), 1)
    return matrix


def bootstrap(
    rng: np.random.Generator, matrix: np.ndarray, draws: int = 2_000
) -> tuple[float, float]:
    n = int(matrix.sum())
    cells = rng.multinomial(n, (matrix / n).ravel(), size=draws).reshape(draws, 3, 3)
    rows = cells.sum(axis=2)
    hits = np.einsum("bii->bi", cells)
    recall = np.where(rows > 0, hits / np.maximum(rows, 1), np.nan)
    low, high = np.percentile(np.nanmean(recall, axis=1), [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for prior, recall, n in CASES:
        truth = float(np.mean(recall))
        jeffreys = boot = 0
        for _ in range(args.repetitions):
            matrix = sample(rng, prior, recall, n)
            hits, labels = np.diag(matrix).astype(float), matrix.sum(axis=1).astype(float)
            present = labels > 0
            low, high = macro_recall_interval(hits[present], labels[present])
            jeffreys += low <= truth <= high
            low, high = bootstrap(rng, matrix)
            boot += low <= truth <= high
        print(
            json.dumps(
                {
                    "prior": prior,
                    "recall": recall,
                    "labels": n,
                    "jeffreys": round(jeffreys / args.repetitions, 4),
                    "bootstrap": round(boot / args.repetitions, 4),
                }
            )
        )


if __name__ == "__main__":
    main()
