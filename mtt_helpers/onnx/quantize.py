"""Int8 quantisation of an exported graph (onnxruntime): about 4x smaller and faster on a CPU.

``quantize_int8`` is **static**: weights are int8, and each activation that enters an integer
product is rounded with one scale measured beforehand on calibration texts. Every text is
therefore computed the same way whichever texts share its batch, so its label never depends on
them. ``quantize_dynamic_int8`` (the earlier method) measures activation scales on each batch
instead: it needs no calibration, but a text's logits, and sometimes its label, change with
the other texts of its batch. Each int8 graph records how it was made in its metadata
(:data:`~mtt_helpers.onnx.layout.INT8_METADATA`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mtt_helpers.onnx.calibration import (
    CalibrationTexts,
    TextCalibrationReader,
    bundled_calibration_texts,
    check_calibration_texts,
)
from mtt_helpers.onnx.layout import refuse_saved_model_directory

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
"""How ``quantize_int8`` turns the calibration activations into a range: the whole observed range,
the 99.999th percentile of absolute values, or the range that minimises the KL divergence."""


class _DropMessage(logging.Filter):
    """Drops log records containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer():
    """Hides onnxruntime's root-level hints to run ``quant_pre_process`` first (on this graph its
    symbolic shape inference fails, and without it quality and speed were unchanged) and the
    progress lines its histogram calibrators print on stdout."""
    hint = _DropMessage("pre-processing")
    logging.getLogger().addFilter(hint)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger().removeFilter(hint)


def _check_paths(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> tuple[Path, Path]:
    onnx_path, out_path = Path(onnx_path).expanduser(), Path(out_path).expanduser()
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {str(onnx_path)!r}")
    refuse_saved_model_directory(out_path.parent)
    return onnx_path, out_path


def _finish(onnx_path: Path, out_path: Path, model, metadata: dict[str, str]) -> Path:
    """Writes ``model`` with ``metadata`` to ``out_path``; copies ``config.json`` and the tokenizer
    files when ``out_path`` lies in another directory, so that directory is self-contained too."""
    import onnx

    from mtt_helpers.onnx.qdq import set_metadata

    set_metadata(model, metadata)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    if out_path.parent.resolve() != onnx_path.parent.resolve():
        for item in onnx_path.parent.iterdir():
            if item.is_file() and not item.name.endswith((".onnx", ".onnx.data")):
                shutil.copy2(item, out_path.parent / item.name)
    return out_path


def quantize_int8(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: Sequence[str] | CalibrationTexts | None = None,
    method: str = "minmax",
    per_channel: bool = True,
) -> Path:
    """Statically quantises an exported graph: int8 weights, activation scales fixed by calibration.

    The linear layers and embeddings are quantised (:func:`~mtt_helpers.onnx.qdq.weight_nodes`);
    only the inputs of the integer products are rounded, everything else stays fp32
    (:func:`~mtt_helpers.onnx.qdq.restore_fp32_consumers`). Inputs and outputs are those of the
    fp32 graph, so ``OnnxPredictor`` runs it unchanged.

    Args:
        onnx_path: The fp32 graph from :func:`export_onnx`, with ``config.json`` and the tokenizer
            beside it (calibration tokenises with them).
        out_path: Where to write the int8 graph.
        calibration: Texts whose activations fix the ranges: a list of strings, a
            :class:`~mtt_helpers.onnx.calibration.CalibrationTexts`, or ``None`` for the 1,800
            sentences of the bundled dataset.
        method: One of :data:`CALIBRATION_METHODS`. On a fine-tuned model (see
            ``benchmarks/int8_agreement.py``) ``"minmax"`` agreed with fp32 as well as the others
            and calibrates fastest.
        per_channel: One weight scale per output channel instead of one per matrix: closer to
            fp32 at the same size and speed.

    Returns:
        ``out_path`` as a ``Path``.

    Raises:
        FileNotFoundError: the graph, ``config.json`` or the tokenizer is missing.
        ValueError: an unknown ``method``, empty calibration texts, or ``out_path`` in a saved
            torch model's directory.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from mtt_helpers.config import CONFIG_FILE, MultiTaskConfig
    from mtt_helpers.onnx.qdq import QUANTISED_OP_TYPES, restore_fp32_consumers, weight_nodes
    from mtt_helpers.onnx.tokenizer import load_tokenizers

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}.")
    onnx_path, out_path = _check_paths(onnx_path, out_path)
    if calibration is None:
        calibration = bundled_calibration_texts()
    elif not isinstance(calibration, CalibrationTexts):
        calibration = CalibrationTexts(check_calibration_texts(calibration), "texts passed to quantize_int8")
    config = MultiTaskConfig.from_json(onnx_path.parent / CONFIG_FILE)
    _, tokenizer, _ = load_tokenizers(onnx_path.parent, config.max_seq_length)
    model = onnx.load(str(onnx_path))
    reader = TextCalibrationReader(tokenizer, calibration.texts, [node.name for node in model.graph.input])
    logger.info("calibrating int8 activation ranges (%s) on %d texts from %s",
                method, len(calibration.texts), calibration.source)
    options = {
        "CalibStridedMinMax": 1,  # one batch at a time: bounded memory (see TextCalibrationReader)
        "OpTypesToExcludeOutputQuantization": list(QUANTISED_OP_TYPES),  # outputs stay fp32
    }
    with tempfile.TemporaryDirectory(prefix="mtt_int8_") as scratch, _quiet_quantizer():
        quantized = Path(scratch) / "model.int8.onnx"
        quantize_static(
            onnx_path, quantized, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTISED_OP_TYPES), nodes_to_quantize=weight_nodes(model),
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            extra_options=options,
        )
        model = onnx.load(str(quantized))
    restore_fp32_consumers(model)
    return _finish(onnx_path, out_path, model, {
        "int8_method": f"static QDQ (onnxruntime quantize_static), {method} calibration, "
                       f"{_weight_scales(per_channel)} int8 weights, uint8 activations",
        "int8_calibration_source": calibration.source,
        "int8_calibration_texts": str(len(calibration.texts)),
    })


def _weight_scales(per_channel: bool) -> str:
    """How the int8 weights are scaled, in the words the graph's metadata uses."""
    return "per-channel" if per_channel else "per-tensor"


def quantize_dynamic_int8(
    onnx_path: str | os.PathLike, out_path: str | os.PathLike, per_channel: bool = True
) -> Path:
    """Dynamically quantises an exported graph: int8 weights, activation scales measured per batch.

    Needs no calibration texts, but a text's outputs depend on the other texts of its batch
    (their largest activations set the scale): prefer :func:`quantize_int8`. Arguments, return
    value and errors as there.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, out_path = _check_paths(onnx_path, out_path)
    with tempfile.TemporaryDirectory(prefix="mtt_int8_") as scratch, _quiet_quantizer():
        quantized = Path(scratch) / "model.int8.onnx"
        quantize_dynamic(onnx_path, quantized, weight_type=QuantType.QInt8, per_channel=per_channel)
        model = onnx.load(str(quantized))
    return _finish(onnx_path, out_path, model, {
        "int8_method": f"dynamic (onnxruntime quantize_dynamic), {_weight_scales(per_channel)} int8 weights, "
                       "activation scales per batch",
    })
