"""The files of an ONNX export directory: the graphs' names and outputs, and where an export may be written.

An export directory holds ``model.onnx`` (and ``model.int8.onnx``), ``config.json`` and the
tokenizer files, so it runs on its own (``OnnxPredictor``), without torch.
"""

from __future__ import annotations

from pathlib import Path

from mtt_helpers.config import CONFIG_FILE, HEADS_FILE, is_saved_model

ONNX_FILE = "model.onnx"
"""Default file name of the fp32 graph inside an export directory."""

INT8_FILE = "model.int8.onnx"
"""Suggested file name of the quantised graph, beside :data:`ONNX_FILE`."""

INT8_METADATA = {
    "int8_method": "how the graph was quantised (static or dynamic, calibration method, weight scales)",
    "int8_calibration_source": "where the calibration texts came from (static quantisation only)",
    "int8_calibration_texts": "how many calibration texts there were (static quantisation only)",
}
"""Keys an int8 graph's ``metadata_props`` records, with their meaning (``OnnxPredictor.metadata``)."""

EMBEDDING_OUTPUT = "embedding"
"""Name of the graph output holding the L2-normalised sentence embeddings."""


def logits_output(task: str) -> str:
    """Name of the graph output holding ``task``'s logits, e.g. ``topic_logits``."""
    return f"{task}_logits"


def refuse_saved_model_directory(directory: Path) -> None:
    """An export writes ``config.json`` and tokenizer files; in a saved torch model's directory
    that would replace the model's own config and break its ``load()``."""
    if is_saved_model(directory):
        raise ValueError(
            f"{str(directory)!r} holds a saved torch model ({CONFIG_FILE} + {HEADS_FILE}); writing an ONNX "
            "export there would overwrite its config. Export into another directory."
        )


def is_onnx_export(directory: Path) -> bool:
    """True when ``directory`` holds an export's ``config.json`` and ``model.onnx``. Whether it may be
    *replaced* is decided by ``mtt_helpers.manifest.check_replaceable`` alone."""
    return directory.is_dir() and (directory / CONFIG_FILE).is_file() and (directory / ONNX_FILE).is_file()
