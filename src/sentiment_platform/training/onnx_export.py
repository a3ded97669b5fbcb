"""Step 1's export: encoder + sentiment head to one fused int8 ONNX graph, with the tokenizer.

Also the one writer of the artifact's `config.json` (fields merged into what is there).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiment_platform.training.configs import BASE_MODEL, MODEL_NAME, SentimentConfig
from sentiment_platform.training.data import EMOTION_LABELS
from sentiment_platform.training.hf_convert import FUSED, fuse, quantize

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def export_onnx(
    model: torch.nn.Module,
    tokenizer: Any,
    out_dir: Path,
    config: SentimentConfig,
    labels: tuple[str, ...],
) -> None:
    """int8 ONNX of encoder + sentiment head, fused by ORT's BERT optimiser; and the tokenizer."""
    import torch

    model = model.cpu()  # exported as it is served, whatever device trained it
    bert_config: Any = model.bert.config  # type: ignore[union-attr]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model_fp32.onnx"
        example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        with torch.no_grad():
            torch.onnx.export(
                model,
                example,
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentiment_logits", "features"],
                dynamic_axes={
                    name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask")
                }
                | {name: {0: "batch"} for name in ("sentiment_logits", "features")},
                opset_version=17,
                dynamo=False,
            )
        hidden = bert_config.hidden_size
        fused = Path(tmp) / FUSED
        logger.info("fused operators: %s", fuse(bert_config, fp32, fused))
        quantize(fused, out_dir / "model.onnx")
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "emotion_head.npz").unlink(missing_ok=True)  # fitted to the old encoder's features
    write_config(
        out_dir,
        name=MODEL_NAME,
        base_model=config.base_model or BASE_MODEL,
        layers=config.layers,
        max_tokens=config.max_tokens,
        feature_size=hidden * (config.layers + 1),
        sentiment_labels=list(labels),
        emotion_labels=list(EMOTION_LABELS),
        sentiment_config=asdict(config),
        emotion=None,
        # calibrated again for this encoder (training/calibrate.py)
        sentiment_bias=None,
        sentiment_calibration=None,
        sentiment_confusion=None,
    )


def write_config(out_dir: Path, **fields: Any) -> None:
    """Merge `fields` into `out_dir/config.json` (created if missing)."""
    path = out_dir / "config.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(current | fields, indent=2) + "\n")
