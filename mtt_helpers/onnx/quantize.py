"""Dynamic int8 quantisation of an exported graph (onnxruntime): about 4x smaller and usually faster on a CPU.

Weights are stored as int8; activations are quantised on the fly, per batch.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from mtt_helpers.onnx.layout import refuse_saved_model_directory


class _DropMessage(logging.Filter):
    """Drops log records containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quantize_int8(
    onnx_path: str | os.PathLike, out_path: str | os.PathLike, per_channel: bool = True
) -> Path:
    """Dynamically quantises an exported graph to int8 weights.

    Only the weights are stored as int8; activations are quantised on the fly per batch,
    so no calibration data is needed. ``config.json`` and the tokenizer files are copied
    when ``out_path`` lies in another directory, so that directory is self-contained too.

    Args:
        onnx_path: The fp32 graph from :func:`export_onnx`.
        out_path: Where to write the int8 graph.
        per_channel: One scale per output channel instead of one per weight matrix. On
            all-MiniLM-L6-v2 (300 bundled sentences) it raised the mean cosine to the fp32
            embeddings from 0.96 to 0.99 at the same size and speed, so it is the default.

    Returns:
        ``out_path`` as a ``Path``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, out_path = Path(onnx_path).expanduser(), Path(out_path).expanduser()
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {str(onnx_path)!r}")
    refuse_saved_model_directory(out_path.parent)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # onnxruntime logs a root-level hint to run quant_pre_process first; on this graph its
    # symbolic shape inference fails and, run without it, it changed neither quality nor speed.
    hint = _DropMessage("consider to run pre-processing")
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(onnx_path, out_path, weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        logging.getLogger().removeFilter(hint)
    if out_path.parent.resolve() != onnx_path.parent.resolve():
        for item in onnx_path.parent.iterdir():
            if item.is_file() and not item.name.endswith((".onnx", ".onnx.data")):
                shutil.copy2(item, out_path.parent / item.name)
    return out_path
