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
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VAL_TEXTS = REPO.parent / "shared" / "data" / "tweeteval" / "sentiment" / "val_text.txt"
FALLBACK_TEXTS = [
    "I love this phone, the camera is amazing!",
    "Worst customer service ever. Still waiting for a refund after three weeks.",
    "The meeting has been moved to Thursday at 10am.",
    "@user can't believe they cancelled the show, so sad",
    "New blog post: ten tips for better sleep #health",
]
BATCH_SIZES = (1, 32, 256, 500)  # 500: WORKER_BATCH_SIZE, what a worker hands the model
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


def _run(backend_name: str, args: argparse.Namespace) -> None:
    from sentiment_platform.config import Settings

    before = _rss_mib()
    started = time.perf_counter()
    if backend_name == "embedded":
        from sentiment_platform.services.analysis.embedded_backend import load_embedded_backend

        backend = load_embedded_backend(Settings(), threads=args.threads)
    else:
        import torch

        from sentiment_platform.services.analysis.transformers_backend import (
            load_transformers_backend,
        )

        if args.threads:
            torch.set_num_threads(args.threads)
        settings = Settings(
            sentiment_model=args.sentiment_model,
            emotion_model=args.emotion_model,
            model_batch_size=256,
        )
        backend = load_transformers_backend(settings)
    load_s = time.perf_counter() - started
    texts = _texts(args.posts)
    backend.predict(texts[:64])  # warm-up: first calls allocate and pick kernels
    print(f"{backend.name}: load {load_s:.1f}s, RSS {before:.0f} -> {_rss_mib():.0f} MiB loaded")
    for batch_size in BATCH_SIZES:
        posts = texts[: min(len(texts), 200)] if batch_size == 1 else texts
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(posts), batch_size):
            backend.predict(posts[start : start + batch_size])
        rate = len(posts) / (time.perf_counter() - started)
        cpu_ms = 1000 * (time.process_time() - cpu_started) / len(posts)
        print(
            f"  batch {batch_size:>3}: {rate:8.1f} posts/s, {cpu_ms:5.2f} CPU-ms/post  "
            f"({len(posts)} posts)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  RSS now {_rss_mib():.0f} MiB, peak {peak:.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="chunks at once (default: cores)")
    parser.add_argument("--posts", type=int, default=2000, help="posts per batched run")
    parser.add_argument("--sentiment-model", help="local HF model dir: also bench transformers")
    parser.add_argument("--emotion-model", help="local HF emotion model dir (with the above)")
    args = parser.parse_args()
    if bool(args.sentiment_model) != bool(args.emotion_model):
        parser.error("--sentiment-model and --emotion-model go together")
    print(cpu_description())
    print(
        f"texts: {'TweetEval val' if VAL_TEXTS.exists() else 'built-in sample'}, "
        f"threads: {args.threads or 'default'}"
    )
    backends = ["embedded"] + (["transformers"] if args.sentiment_model else [])
    context = multiprocessing.get_context("spawn")
    for name in backends:
        process = context.Process(target=_run, args=(name, args))
        process.start()
        process.join()
        if process.exitcode:
            raise SystemExit(f"{name} benchmark failed (exit {process.exitcode})")


if __name__ == "__main__":
    main()
