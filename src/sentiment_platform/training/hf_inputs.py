"""What `model import` is told, checked before anything heavy runs: the name, the languages,
the label map, the sample texts.

No torch here: the checks that need only the user's words run first, so a typo costs no
model load.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from sentiment_platform.domain import Emotion, Sentiment, Task, to_emotion, to_sentiment

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")
SAMPLE_RESOURCE = "import_sample.txt"  # beside this module: the default agreement sample


class ModelImportError(ValueError):
    """`model import` cannot go on; the message says why and what to change."""


def default_name(source: str) -> str:
    """The model's name from its source: the last part of the path or hub id, lower-cased,
    anything but letters, digits, `.`, `_` and `-` turned into `-`."""
    last = source.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", last).strip("-._")[:64]
    if not NAME_PATTERN.match(name):
        raise ModelImportError(f"cannot make a model name from {source!r}; give one with --name")
    return name


def check_name(name: str) -> str:
    """An explicit --name, refused unless it is a safe directory name."""
    if not NAME_PATTERN.match(name):
        raise ModelImportError(
            f"--name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_languages(value: str | None) -> list[str]:
    """`--language en,es` as ISO 639-1 codes; none given: English."""
    if value is None:
        return ["en"]
    codes = [part.strip().lower() for part in value.split(",") if part.strip()]
    bad = [code for code in codes if not LANGUAGE_PATTERN.match(code)]
    if bad or not codes:
        raise ModelImportError(
            f"--language {value!r}: give ISO 639-1 codes separated by commas, e.g. en,es"
        )
    return list(dict.fromkeys(codes))


def parse_label_map(value: str | None) -> dict[str, str]:
    """`--label-map from=to,...` as {model label (lower-cased): platform label}."""
    pairs: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        source, sep, target = part.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ModelImportError(
                f"--label-map: {part.strip()!r} is not from=to (e.g. LABEL_0=negative)"
            )
        pairs[source.strip().lower()] = target.strip().lower()
    return pairs


def map_labels(id2label: Mapping[int, str], task: Task, label_map: Mapping[str, str]) -> list[str]:
    """The platform's label for each of the model's outputs, in logit order.

    A name is matched case-insensitively through the domain's one label map (for emotion,
    disgust is anger); `label_map` (from `parse_label_map`) overrides it. Names nothing maps
    (generic LABEL_0 included) are an error naming them and showing `--label-map`.
    """
    ours = [label.value for label in (Sentiment if task is Task.SENTIMENT else Emotion)]
    names = [str(id2label[i]) for i in range(len(id2label))]
    lowered = {name.strip().lower() for name in names}
    stray = [source for source in label_map if source not in lowered]
    if stray:
        raise ModelImportError(
            f"--label-map names {', '.join(map(repr, stray))}, which the model does not have; "
            f"its labels are {', '.join(map(repr, names))}"
        )
    wrong = sorted({target for target in label_map.values() if target not in ours})
    if wrong:
        raise ModelImportError(
            f"--label-map maps onto {', '.join(map(repr, wrong))}, not a {task.value} label; "
            f"the {task.value} labels are {', '.join(ours)}"
        )
    convert = to_sentiment if task is Task.SENTIMENT else to_emotion
    labels: list[str] = []
    unmapped: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key in label_map:
            labels.append(label_map[key])
            continue
        try:
            labels.append(convert(name).value)
        except ValueError:
            unmapped.append(name)
    if unmapped:
        choices = sorted(ours)
        example = ",".join(f"{name}={choices[i % len(choices)]}" for i, name in enumerate(unmapped))
        raise ModelImportError(
            f"the model's label{'s' if len(unmapped) > 1 else ''} "
            f"{', '.join(map(repr, unmapped))} map{'' if len(unmapped) > 1 else 's'} onto no "
            f"{task.value} label ({', '.join(ours)}); say which with --label-map, "
            f"e.g. --label-map {example}"
        )
    return labels


def read_sample(path: Path | None) -> list[str]:
    """The agreement sample: one text per line, or a CSV with a `text` column; None: the
    built-in set of varied English posts."""
    if path is None:
        text = (resources.files(__package__ or "") / SAMPLE_RESOURCE).read_text("utf-8")
        return [line for line in text.splitlines() if line.strip()]
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"--sample {path}: cannot be read ({exc})") from None
    lines = text.splitlines()
    header = next(csv.reader(lines[:1]), [])
    if path.suffix.lower() == ".csv" or "text" in [cell.strip().lower() for cell in header]:
        reader = csv.DictReader(io.StringIO(text))
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        if "text" not in columns:
            raise ModelImportError(f"--sample {path}: a CSV sample needs a `text` column")
        texts = [row[columns["text"]] or "" for row in reader]
    else:
        texts = lines
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ModelImportError(f"--sample {path}: holds no texts")
    return texts
