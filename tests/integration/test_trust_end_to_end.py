"""Labels end to end (issue 30), as a user runs them: `serve` on the embedded default with its
offline model, `ingest file` with some rows already labelled, a random draw, labels and a
skip through the API, quality, and the metrics' estimate with an interval once there are
MIN_ESTIMATE_LABELS random labels."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.servers import SCRIPT, SOURCE, serve_process

TEXTS = [
    "I love this phone, the camera is wonderful",
    "Worst customer service ever, still waiting for a refund",
    "The meeting is moved to Thursday at 3pm",
    "So happy with how the launch went today!",
    "My order arrived broken and nobody answers",
    "The train leaves from platform 4",
]


def _posts(path: Path) -> None:
    rows = []
    for i in range(30):
        row: dict[str, object] = {
            "post_id": f"e2e-{i:02d}",
            "source": "file",
            "content": TEXTS[i % 6] + f" #{i}",
        }
        if i < 5:  # brought in labelled: labels, not random ones
            row["label"] = "negative" if i % 2 else {"sentiment": "positive", "emotion": "joy"}
        rows.append(row)
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")


def _wait_analysed(http: httpx.Client, count: int) -> list[dict]:
    deadline = time.monotonic() + 120
    while True:
        items = http.get("/api/posts", params={"limit": 100}).json()["items"]
        if len(items) == count and all(item["sentiment"] for item in items):
            return items
        assert time.monotonic() < deadline, f"{len(items)} posts stored"
        time.sleep(0.3)


def test_ingest_draw_label_skip_and_quality_through_a_running_server(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}",
        "RATE_LIMIT_PER_MINUTE": "0",
        "MIN_ESTIMATE_LABELS": "15",
        "METRICS_CACHE_S": "0",
    }
    path = tmp_path / "posts.jsonl"
    _posts(path)
    with (
        serve_process(env, tmp_path, ready="/readyz") as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        ingested = subprocess.run(
            [str(SCRIPT), "ingest", "file", str(path), "--api", base],
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(SOURCE), **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ingested.returncode == 0, ingested.stderr
        items = {item["post_id"]: item for item in _wait_analysed(http, 30)}
        # the labels came through the API, the bus and the worker with their posts
        assert items["e2e-01"]["label"]["sentiment"] == "negative"
        assert items["e2e-00"]["label"]["emotion"] == "joy"
        assert sum(item["label"] is not None for item in items.values()) == 5

        before = http.get("/api/metrics").json()
        assert before["total"] == 30
        assert before["estimate"]["labels"] == 0  # the five brought in were not drawn
        assert before["estimate"]["note"].endswith("at least 15 needed for an interval")
        assert all(s["estimated_interval"] is None for s in before["sentiment"].values())

        drawn = http.get("/api/review", params={"strategy": "random", "limit": 100}).json()["items"]
        assert len(drawn) == 25  # every analysed, unlabelled post: none labelled
        assert all(item["label"] is None for item in drawn)
        for item in drawn[:10]:
            label = {"sentiment": item["sentiment"] if item["post_id"] < "e2e-20" else "neutral"}
            answer = http.put(f"/api/posts/{item['post_id']}/label", json=label)
            assert answer.status_code == 200, answer.text
        assert http.post(f"/api/review/{drawn[10]['post_id']}/skip").status_code == 204

        quality = http.get("/api/quality").json()
        assert quality["labels"] == 15
        # the ten labelled after the draw, and the five the draw met already labelled
        assert quality["random_labels"] == quality["compared"] == 15
        assert quality["skipped"] == 1
        assert quality["model"] == items["e2e-10"]["model"]
        assert sum(sum(row.values()) for row in quality["confusion"].values()) == 15
        assert 0 <= quality["macro_recall_interval"][0] <= quality["macro_recall"] <= 100

        metrics = http.get("/api/metrics").json()
        assert metrics["estimate"]["method"] == "stratified"
        assert metrics["estimate"]["labels"] == 15
        assert metrics["estimate"]["model"] == quality["model"]
        for share in metrics["sentiment"].values():
            low, high = share["estimated_interval"]
            assert 0 <= low <= share["estimated_share"] <= high <= 100

        again = http.get("/api/review", params={"limit": 100}).json()["items"]
        assert len(again) == 14  # not the labelled ones, not the skipped one
