"""`ingest file` reads an optional label (issue 30): JSONL `label` as a sentiment or an
object, CSV `label` (+ `label_emotion`); a bad one is a bad row naming the field."""

from __future__ import annotations

import json
from pathlib import Path

from sentiment_platform.domain import Emotion, Post, PostLabel, Sentiment
from sentiment_platform.pipeline.ingester import read_rows


def _rows(path: Path) -> dict[int, Post | str]:
    return dict(read_rows(path))


def test_jsonl_labels(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    rows = [
        {"source": "s", "content": "a", "label": "negative"},
        {"source": "s", "content": "b", "label": {"sentiment": "positive", "emotion": "joy"}},
        {"source": "s", "content": "c", "label": None},
        {"source": "s", "content": "d"},
        {"source": "s", "content": "e", "label": "furious"},
        {"source": "s", "content": "f", "label": {"emotion": "joy"}},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    read = _rows(path)
    assert all(isinstance(read[line], Post) for line in (1, 2, 3, 4))
    assert read[1].label == PostLabel(sentiment=Sentiment.NEGATIVE)
    assert read[2].label == PostLabel(sentiment=Sentiment.POSITIVE, emotion=Emotion.JOY)
    assert read[3].label is None and read[4].label is None
    assert isinstance(read[5], str) and read[5].startswith("label.sentiment:")
    assert isinstance(read[6], str) and read[6].startswith("label.sentiment:")


def test_csv_labels(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "source,content,label,label_emotion\n"
        "s,one,Negative,anger\n"
        "s,two,neutral,\n"
        "s,three,,\n"
        "s,four,,fear\n"
        "s,five,positive,love\n"
    )
    one, two, three, four, five = (row for _, row in read_rows(path))
    assert isinstance(one, Post) and isinstance(two, Post) and isinstance(three, Post)
    assert one.label == PostLabel(sentiment=Sentiment.NEGATIVE, emotion=Emotion.ANGER)
    assert two.label == PostLabel(sentiment=Sentiment.NEUTRAL)
    assert three.label is None
    assert four == "label_emotion: needs a sentiment in the label column"
    assert isinstance(five, str) and five.startswith("label.emotion:")
