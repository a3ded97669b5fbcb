"""Model throughput: posts/s at batch 1, 32, 256 and 500, and resident memory, per backend.

Each backend runs in its own fresh process, so its RSS is its own. CPU-ms per post (all
threads) is printed beside posts/s: on a shared machine it moves far less than the wall-clock
rate. The CPU's model name and the vector extensions int8 inference uses (AVX2, AVX-512,
VNNI, BF16, AMX) are printed first: the same graph runs at very different speeds without
them, so record them with the figure. The texts are the TweetEval validation tweets from
../shared/data when present (real lengths matter: batches are padded to their longest text),
else a small built-in set repeated.

    .venv/bin/python benchmarks/model.py [--threads N] [--posts N]
        [--sentiment-model PATH --emotion-model PATH]   # also the transformers backend
    .venv/bin/python benchmarks/model.py --model NAME   # an imported model (MODELS_DIR or a path)
    .venv/bin/python benchmarks/model.py --seed-shape [--work DIR]

`--model` runs imported models (`model import`) at batch 1, 32 and 500. `--seed-shape`
compares, in one run, the seed's two models as the `transformers` backend serves them with
the same two imported int8: random weights in the seed's shapes (`seed_shape.py`: roberta-base
for sentiment, distilroberta-base for emotion), built once under --work, imported with
`model import`'s code, then both backends over the same texts, each in its own process.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import resource
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VAL_TEXTS = REPO.parent / "shared" / "data" / "tweeteval" / "sentiment" / "val_text.txt"
TRAIN_TEXTS = VAL_TEXTS.with_name("train_text.txt")  # --seed-shape's tokenizer learns on these
FALLBACK_TEXTS = [
    "I love this phone, the camera is amazing!",
    "Worst customer service ever. Still waiting for a refund after three weeks.",
    "The meeting has been moved to Thursday at 10am.",
    "@user can't believe they cancelled the show, so sad",
    "New blog post: ten tips for better sleep #health",
]
BATCH_SIZES = (1, 32, 256, 500)  # 500: WORKER_BATCH_SIZE, what a worker hands the model
IMPORTED_BATCH_SIZES = (1, 32, 500)  # --model and --seed-shape
# The /proc/cpuinfo flags that decide how fast ONNX Runtime's int8 and fp32 kernels run.
CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
)


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def cpu_description() -> str:
    """'model name; cores; the CPU_FLAGS present' from /proc/cpuinfo (Linux), else a note."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cpu: /proc/cpuinfo not readable"
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in info.splitlines())
        if key.strip() in ("model name", "flags")
    )
    flags = set(fields.get("flags", "").split())
    present = [flag for flag in CPU_FLAGS if flag in flags] or ["none of " + ", ".join(CPU_FLAGS)]
    cores = multiprocessing.cpu_count()
    return f"cpu: {fields.get('model name', '?')}; {cores} cores; {' '.join(present)}"


def _texts(posts: int) -> list[str]:
    if VAL_TEXTS.exists():
        source = VAL_TEXTS.read_text(encoding="utf-8").splitlines()
    else:
        source = FALLBACK_TEXTS
    return [source[i % len(source)] for i in range(posts)]


class ImportedModels:
    """Imported models (`OnnxClassifier`) served as a backend would: each one over each batch
    (a sentiment and an emotion model: two passes, as the transformers backend makes)."""

    def __init__(self, folders: list[Path], threads: int | None) -> None:
        from sentiment_platform.services.analysis.onnx_classifier import OnnxClassifier

        self.classifiers = [OnnxClassifier(folder, threads=threads) for folder in folders]
        self.name = "int8 " + " + ".join(c.name for c in self.classifiers)

    def predict(self, texts: list[str]) -> list[list[object]]:
        return [classifier.predict(texts) for classifier in self.classifiers]


def _load(backend_name: str, args: argparse.Namespace) -> Any:
    from sentiment_platform.config import Settings

    if backend_name == "embedded":
        from sentiment_platform.services.analysis.embedded_backend import load_embedded_backend

        return load_embedded_backend(Settings(), threads=args.threads)
    if backend_name.startswith("imported:"):
        folders = [Path(p) for p in backend_name.removeprefix("imported:").split(",")]
        return ImportedModels(folders, args.threads)
    import torch

    from sentiment_platform.services.analysis.transformers_backend import (
        load_transformers_backend,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(
        sentiment_model=args.sentiment_model,
        emotion_model=args.emotion_model,
        model_batch_size=args.transformers_batch,
    )
    return load_transformers_backend(settings)


def _run(backend_name: str, args: argparse.Namespace, results: Any = None) -> None:
    before = _rss_mib()
    started = time.perf_counter()
    backend = _load(backend_name, args)
    load_s = time.perf_counter() - started
    texts = _texts(args.posts)
    backend.predict(texts[:64])  # warm-up: first calls allocate and pick kernels
    print(f"{backend.name}: load {load_s:.1f}s, RSS {before:.0f} -> {_rss_mib():.0f} MiB loaded")
    rates = {}
    for batch_size in args.batch_sizes:
        posts = texts[: min(len(texts), args.single_posts)] if batch_size == 1 else texts
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(posts), batch_size):
            backend.predict(posts[start : start + batch_size])
        rate = len(posts) / (time.perf_counter() - started)
        cpu_ms = 1000 * (time.process_time() - cpu_started) / len(posts)
        rates[batch_size] = (rate, cpu_ms)
        print(
            f"  batch {batch_size:>3}: {rate:8.1f} posts/s, {cpu_ms:6.2f} CPU-ms/post  "
            f"({len(posts)} posts)",
            flush=True,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  RSS now {_rss_mib():.0f} MiB, peak {peak:.0f} MiB", flush=True)
    if results is not None:
        results.put((backend_name, backend.name, rates))


def _model_folder(name: str) -> Path:
    """--model NAME: a directory of that name in MODELS_DIR, else a path."""
    from sentiment_platform.config import Settings

    folder = Settings().models_path / name
    return folder if folder.is_dir() else Path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="chunks at once (default: cores)")
    parser.add_argument("--posts", type=int, default=None, help="posts per batched run")
    parser.add_argument("--single-posts", type=int, default=200, help="posts at batch 1")
    parser.add_argument("--sentiment-model", help="local HF model dir: also bench transformers")
    parser.add_argument("--emotion-model", help="local HF emotion model dir (with the above)")
    parser.add_argument("--transformers-batch", type=int, default=32, help="MODEL_BATCH_SIZE")
    parser.add_argument(
        "--model", action="append", help="an imported model: a name in MODELS_DIR or a path"
    )
    parser.add_argument(
        "--seed-shape", action="store_true", help="transformers vs int8, the seed's shapes"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/seed-shape"))
    args = parser.parse_args()
    if bool(args.sentiment_model) != bool(args.emotion_model):
        parser.error("--sentiment-model and --emotion-model go together")
    imported = bool(args.model or args.seed_shape)
    args.batch_sizes = IMPORTED_BATCH_SIZES if imported else BATCH_SIZES
    args.posts = args.posts or (500 if args.seed_shape else 2000)
    print(cpu_description())
    print(
        f"texts: {'TweetEval val' if VAL_TEXTS.exists() else 'built-in sample'}, "
        f"threads: {args.threads or 'default'}"
    )
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    if args.seed_shape:
        # In a process of its own: the torch models it builds would stay in this one's RSS
        # and, through the children it spawns, in their peak figures.
        built = _in_process(context, results, _build_seed_shape, (args.work, results), "build")
        sentiment, emotion, imported_dirs = built
        args.sentiment_model, args.emotion_model = str(sentiment), str(emotion)
        backends = ["transformers", "imported:" + ",".join(map(str, imported_dirs))]
    elif args.model:
        folders = [_model_folder(name) for name in args.model]
        for folder in folders:
            if not (folder / "model.json").is_file():
                parser.error(
                    f"--model {folder.name}: no model.json in MODELS_DIR/{folder.name} "
                    f"or at {folder}"
                )
        backends = ["imported:" + ",".join(map(str, folders))]
    else:
        backends = ["embedded"] + (["transformers"] if args.sentiment_model else [])
    measured = {}
    for name in backends:
        backend, label, rates = _in_process(context, results, _run, (name, args, results), name)
        measured[backend] = (label, rates)
    if args.seed_shape:
        _side_by_side(measured, backends)


def _in_process(context: Any, results: Any, target: Any, args: tuple[Any, ...], name: str) -> Any:
    """Run `target(*args)` in a fresh process; what it puts on `results`."""
    process = context.Process(target=target, args=args)
    process.start()
    while True:
        try:
            answer = results.get(timeout=1)
            break
        except queue.Empty:
            if not process.is_alive():
                raise SystemExit(f"{name} failed (exit {process.exitcode})") from None
    process.join()
    return answer


def _build_seed_shape(work: Path, results: Any) -> None:
    from seed_shape import build_and_import

    corpus = (
        TRAIN_TEXTS.read_text(encoding="utf-8").splitlines()
        if TRAIN_TEXTS.exists()
        else _texts(5000)
    )
    results.put(build_and_import(work, corpus, _texts(2000)))


def _side_by_side(measured: dict[str, Any], backends: list[str]) -> None:
    (torch_label, torch_rates), (int8_label, int8_rates) = (measured[b] for b in backends)
    print(f"\nthe seed's two models: {torch_label} vs {int8_label}")
    print("| batch | transformers posts/s | int8 posts/s | int8 ÷ transformers | CPU-ms/post |")
    print("|---|---|---|---|---|")
    for batch in IMPORTED_BATCH_SIZES:
        (slow, slow_ms), (fast, fast_ms) = torch_rates[batch], int8_rates[batch]
        print(
            f"| {batch} | {slow:.1f} | {fast:.1f} | **{fast / slow:.1f}×** | "
            f"{slow_ms:.1f} → {fast_ms:.1f} |"
        )


if __name__ == "__main__":
    main()
