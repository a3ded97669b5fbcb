"""The seed's two models in shape, with random weights: the same compute, nothing downloaded.

`cardiffnlp/twitter-roberta-base-sentiment-latest` is a roberta-base (12 layers, 768 wide,
12 heads, 3,072 intermediate, a 50,265-token vocabulary); `j-hartmann/emotion-english-
distilroberta-base` a distilroberta-base (the same, 6 layers). Each is built from its config
with random weights and saved as a Hugging Face directory with a byte-level BPE tokenizer
trained here on the benchmark's own texts (so tweets cut into about as many tokens as the
real tokenizer makes), then imported int8 with `model import`'s code. Random weights make
the int8 agreement meaningless (their logits are near ties), so the import is forced; the
agreement on real weights is `import_agreement.py`'s.

Built once under the work directory and reused by later runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
EMOTION_LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
VOCAB = 50_265
SHAPES = {
    # name: (layers, labels)
    "seed-sentiment-roberta-base": (12, SENTIMENT_LABELS),
    "seed-emotion-distilroberta-base": (6, EMOTION_LABELS),
}


def _tokenizer(texts: list[str]) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=VOCAB,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=512,
    )


def _build(out: Path, layers: int, labels: list[str], tokenizer: object) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    config = RobertaConfig(
        vocab_size=VOCAB,
        hidden_size=768,
        num_hidden_layers=layers,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]


def build_and_import(
    work: Path, corpus: list[str], texts: list[str]
) -> tuple[Path, Path, list[Path]]:
    """(sentiment dir, emotion dir, their int8 imports), built under `work` unless there; the
    tokenizer learns on `corpus`, and prints how many tokens it cuts `texts` into."""
    from sentiment_platform.domain import Task
    from sentiment_platform.training.hf_import import ImportRequest, import_model

    logging.basicConfig(level=logging.WARNING)
    tokenizer = None
    sources, imported = [], []
    for name, (layers, labels) in SHAPES.items():
        source, folder = work / name, work / "models" / name
        if not (source / "config.json").is_file():
            tokenizer = tokenizer or _tokenizer(corpus)
            print(f"building {name}: {layers} layers, random weights -> {source}", flush=True)
            _build(source, layers, labels, tokenizer)
        if not (folder / "model.json").is_file():
            task = Task.SENTIMENT if labels is SENTIMENT_LABELS else Task.EMOTION
            request = ImportRequest(
                source=str(source), task=task, models_dir=work / "models", name=name, force=True
            )
            manifest = import_model(request).manifest
            print(
                f"imported {name}: {manifest['size_bytes'] / 1e6:.0f} MB int8, "
                f"{manifest['posts_per_s']} posts/s at import (batch 32), agreement "
                f"{manifest['agreement']:.1%} (random weights: not meaningful)",
                flush=True,
            )
        sources.append(source)
        imported.append(folder)
    from transformers import AutoTokenizer

    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(sources[0])(texts)["input_ids"]]
    print(f"tokens a text: mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}")
    return sources[0], sources[1], imported
