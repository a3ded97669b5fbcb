"""`model import`'s conversion: a Hugging Face sequence classifier to one int8 ONNX graph.

Export (opset 17, dynamic batch and sequence), ONNX Runtime's transformer fusions where it
knows the architecture, then dynamic int8 quantisation: the steps `onnx_export.py` applies
to the embedded model, for any classifier. torch is imported inside the functions: serving
never imports this module.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# config.model_type -> the `optimize_model` model type for it. ONNX Runtime's "bert"
# fusions cover the encoders built like BERT, RoBERTa and DistilBERT; on DeBERTa they fuse
# the layer norms and GELUs but not its disentangled attention (the agreement check holds
# the result to the fp32 model either way).
FUSION_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "distilbert": "bert",
    "electra": "bert",
    "deberta": "bert",
    "deberta-v2": "bert",
}
OPSET = 17
FUSED = "model_fused.onnx"  # the fused fp32 graph's name in `convert`'s work directory
REFERENCE_BATCH = 32


def logits_module(model: Any) -> torch.nn.Module:
    """The classifier as a module of (input_ids, attention_mask) -> logits, in eval mode.

    Eval mode on the wrapper matters: the exporter puts every submodule back in the mode of
    the module it was given, and a wrapper left in training mode would turn dropout on in
    the fp32 model the graph is then compared with.
    """
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.model(
                input_ids=input_ids, attention_mask=attention_mask
            ).logits
            return logits

    return Logits().eval()


def export_fp32(model: Any, tokenizer: Any, path: Path) -> None:
    """The fp32 graph: inputs input_ids and attention_mask (one text a row, so token types
    are all zero and the model's own default serves), output logits."""
    import torch

    example = tokenizer(["an example post to trace", "short"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.onnx.export(
            logits_module(model),
            (example["input_ids"], example["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "logits": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    model.eval()


def fuse(config: Any, fp32: Path, out: Path) -> dict[str, int] | None:
    """ONNX Runtime's transformer optimiser for the architecture, written to `out`; returns
    the fused operator counts, or None (and `out` is the unfused graph) where the optimiser
    does not know the architecture."""
    from onnxruntime.transformers import optimizer

    model_type = FUSION_TYPES.get(config.model_type)
    if model_type is None:
        out.write_bytes(fp32.read_bytes())
        return None
    optimized = optimizer.optimize_model(
        str(fp32),
        model_type=model_type,
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=1,
    )
    optimized.save_model_to_file(str(out))
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def quantize(fused: Path, out: Path, *, unsigned: bool = False) -> None:
    """Dynamic int8: weights per channel, activations quantised at run time.

    Signed weights are the fast kind, but ONNX Runtime's u8×s8 kernel for CPUs without
    AVX-512 VNNI adds pairs of products in 16 bits, which saturate where activations and
    weights are both large; `unsigned` weights (u8×u8) never saturate, and run ~20 %
    slower on such a CPU (docs/models.md, "Importing a model").
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fused),
        str(out),
        weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def reference_probabilities(
    model: Any, tokenizer: Any, texts: Sequence[str], max_length: int
) -> np.ndarray:
    """The fp32 torch model's softmax over its logits, one row per text, in order."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), REFERENCE_BATCH):
            encoded = tokenizer(
                list(texts[start : start + REFERENCE_BATCH]),
                padding="longest",
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            logits = model(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]
            ).logits
            rows.append(logits.float().softmax(dim=-1).numpy())
    return np.concatenate(rows)


def convert(model: Any, tokenizer: Any, work: Path, out: Path) -> dict[str, int] | None:
    """fp32 export, fusion and int8 quantisation; the int8 graph is written to `out`.

    Returns the fused operator counts (None: unfused). The fp32 and fused graphs (as large
    as the model) stay in `work`, the fused one as `FUSED`, to be quantised again.
    """
    fp32, fused = work / "model_fp32.onnx", work / FUSED
    model_type = model.config.model_type
    failure = None
    with _quiet():
        export_fp32(model, tokenizer, fp32)
        try:
            counts = fuse(model.config, fp32, fused)
        except Exception as exc:  # the optimiser's pattern matching fails in its own ways
            failure = exc
            fused.write_bytes(fp32.read_bytes())
            counts = None
        quantize(fused, out)
    if counts is None:
        why = f"failed ({failure})" if failure else "does not know it"
        logger.warning(
            "no transformer fusion for model_type %r: ONNX Runtime's optimiser %s; "
            "the graph is quantised unfused",
            model_type,
            why,
            extra={"event": "model_import.no_fusion", "model_type": model_type},
        )
    else:
        logger.info("fused operators: %s", counts)
    return counts


@contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's optimiser and quantiser log every node through the root logger, and the
    exporter warns about the branches it traces: the import's own lines are what a user
    needs, so those are held back while the steps run."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
