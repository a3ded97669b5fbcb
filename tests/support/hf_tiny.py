"""Tiny random-weight Hugging Face classifiers saved to disk, so tests load real checkpoints.

Nothing is downloaded: the tokenizer is trained here on a few lines with `tokenizers`, the
model is a 2-layer config with random weights, both written with `save_pretrained`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AlbertConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
)

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
GENERIC_LABELS = ["LABEL_0", "LABEL_1", "LABEL_2"]
HARTMANN_LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]

CORPUS = [
    "I love this so much, what a great day",
    "this is terrible and I hate it",
    "the meeting is at noon on tuesday",
    "@someone check https://example.com/page for the news",
    "so scared about tomorrow, worried sick",
    "wow did not expect that at all",
    "disgusting service, never again",
    "feeling sad and lonely tonight",
]
MAX_LENGTH = 64


def _train_tokenizer(arch: str) -> PreTrainedTokenizerFast:
    if arch == "roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(
            CORPUS,
            trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False),
        )
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            model_max_length=MAX_LENGTH,
        )
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        CORPUS,
        trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials, show_progress=False),
    )
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=MAX_LENGTH,
    )


def build_tiny_classifier(
    out: Path,
    labels: list[str],
    arch: str = "roberta",
    *,
    layers: int = 2,
    hidden: int = 32,
    initializer_range: float = 0.5,
    seed: int | None = None,
    bare: bool = False,
) -> Path:
    """Save a random classifier (2 layers unless told) with these `id2label` names, and its
    tokenizer, to `out`. `seed` makes the weights the same on every run; `bare` saves the
    encoder alone (AutoModel: no classification head), as a user might by mistake."""
    tokenizer = _train_tokenizer(arch)
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden,
        # Large random weights so different texts get visibly different answers.
        "initializer_range": initializer_range,
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }
    if arch == "roberta":
        config = RobertaConfig(
            **common,
            max_position_embeddings=MAX_LENGTH + 2,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        )
    elif arch == "albert":  # an architecture ONNX Runtime's optimiser has no fusions for
        config = AlbertConfig(
            **common, embedding_size=16, max_position_embeddings=MAX_LENGTH, pad_token_id=0
        )
    else:
        config = BertConfig(**common, max_position_embeddings=MAX_LENGTH, pad_token_id=0)
    if seed is not None:
        torch.manual_seed(seed)
    model = (AutoModel if bare else AutoModelForSequenceClassification).from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
