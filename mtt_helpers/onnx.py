"""Chapter 05: the whole model as one ONNX graph, and its int8 copy, quantised statically.

1. :func:`export_onnx`: transformer -> mean pooling -> L2 normalisation -> every head, as one graph,
   written as a new folder with ``config.json``, the tokenizer files and ``manifest.json``, so
   ``mtt_core.onnx_runtime.OnnxPredictor`` runs it without torch. The graph's metadata holds each
   task's labels.
2. :func:`quantize_int8`: int8 weights, and each activation that enters an integer product rounded
   with one scale measured beforehand on calibration texts (*static* quantisation), so a text's outputs
   never depend on the other texts of its batch. :func:`quantize_dynamic_int8`, which measures the
   scales on each batch instead, is kept for comparison. Each int8 graph is added to its export's
   manifest and records how it was made (``mtt_core.model_files.INT8_METADATA``).

Typical use::

    export_onnx(model, "onnx_model")
    quantize_int8("onnx_model/model.onnx")
    OnnxPredictor("onnx_model", onnx_file="model.int8.onnx").predict(["Great match!"])
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from mtt_core.csv_files import read_text_csv
from mtt_core.files import ONNX_KIND, add_file, check_replaceable, read_manifest, write_atomically
from mtt_core.model_files import (
    CONFIG_FILE, EMBEDDING_OUTPUT, INT8_FILE, ONNX_FILE, OPSETS, MultiTaskConfig, labels_metadata, logits_output,
    refuse_saved_model_directory,
)
from mtt_core.onnx_runtime import TOKENIZER_CONFIG_FILE, encode_batch, load_tokenizers
from mtt_core.predictions import is_text
from mtt_helpers.data import BUNDLED_CSV, load_bundled
from mtt_helpers.encoder import encoder_token_limit
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- export
_TRACE_TEXTS = [
    "A short sentence.",
    "A noticeably longer sentence, so that the example batch used for tracing contains padding.",
]
"""Example batch for tracing. It must contain padding: transformers may skip the attention
mask when it is all ones, and the legacy exporter would then record a graph without it."""


class _OnnxGraph(nn.Module):
    """Tensors in, tuple out: the shape ``torch.onnx.export`` needs.

    ``MultiTaskSentenceTransformer.forward`` takes and returns dicts and goes through
    sentence-transformers' dispatch code; here the Hugging Face model is called directly, then
    the encoder's own pooling (``model.pool``), which traces into a small, plain graph.
    """

    def __init__(self, model: MultiTaskSentenceTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        tokens = self.model.transformer(**inputs).last_hidden_state
        embeddings = self.model.pool(tokens, attention_mask)
        return (embeddings, *(head(embeddings) for head in self.model.heads.values()))


def check_exportable(model: MultiTaskSentenceTransformer) -> None:
    """Refuses encoders whose pipeline ``_OnnxGraph`` would not reproduce.

    Raises:
        ValueError: the encoder is not Transformer -> mean Pooling -> (Normalize).
    """
    modules = list(model.encoder)
    names = [type(module).__name__ for module in modules]
    supported = (
        len(modules) in (2, 3)
        and hasattr(modules[0], "auto_model")
        and names[1] == "Pooling"
        and names[2:] in ([], ["Normalize"])
    )
    if supported:
        pooling = modules[1].get_config_dict()
        # sentence-transformers >= 6 stores a mode string; older versions one flag per mode.
        other_modes = [v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"]
        mean = pooling.get("pooling_mode") == "mean" or (
            pooling.get("pooling_mode_mean_tokens", False) and not any(other_modes)
        )
        supported = bool(mean)
    if not supported:
        raise ValueError(
            f"export_onnx supports encoders made of Transformer -> mean Pooling -> (Normalize); got {names}."
        )


def export_onnx(model: MultiTaskSentenceTransformer, directory: str | os.PathLike, opset: int = 17,
                overwrite: bool = False) -> Path:
    """Exports the whole multi-task model as one ONNX graph, with its config and tokenizer, as a new folder.

    Inputs are ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer produces
    them), int64, ``(batch, sequence)`` with both axes dynamic. Outputs are ``embedding`` ``(batch, 384)``
    and ``<task>_logits`` ``(batch, classes)`` per task.

    Args:
        model: Exported as it is, at its token limit.
        directory: The folder to write; ``model.onnx`` is written inside it.
        opset: ONNX opset version (14 or later: scaled dot-product attention).
        overwrite: Replace an earlier export at ``directory`` (holding nothing its manifest does not list).

    Returns:
        The path of the ``.onnx`` file.

    Raises:
        ValueError: the encoder's pipeline is not supported, ``opset`` is below 14 or above what torch
            exports, or the folder is a symbolic link.
        FileExistsError: the folder exists (without ``overwrite``), or holds anything but an earlier export's files.
    """
    check_exportable(model)
    check_opset(opset)
    directory = Path(directory).expanduser()
    check_replaceable(directory, ONNX_KIND)  # a folder that is not an earlier export: never
    if not overwrite and directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{str(directory)!r} exists; pass overwrite=True to replace an earlier export.")
    write_atomically(directory, lambda folder: write_export_files(model, folder / ONNX_FILE, opset),
                     is_dir=True, kind=ONNX_KIND, overwrite=overwrite)
    return directory / ONNX_FILE


def check_opset(opset: int) -> int:
    """The ONNX opset, refused before any work when it is outside ``mtt_core.model_files.OPSETS`` or
    above what this torch exports.

    Raises:
        ValueError: naming the range.
    """
    from torch.onnx._constants import ONNX_MAX_OPSET

    highest = min(OPSETS[-1], ONNX_MAX_OPSET)
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSETS[0] <= opset <= highest:
        raise ValueError(f"opset must be an integer from {OPSETS[0]} to {highest}, got {opset!r}")
    return opset


def write_export_files(model: MultiTaskSentenceTransformer, path: Path, opset: int = 17) -> None:
    """Writes the graph at ``path`` and ``config.json`` and the tokenizer files beside it, into a
    folder being written (``export_onnx``, or ``mtt export``, which adds the int8 graph)."""
    features = model.tokenize(_TRACE_TEXTS)
    input_names = ["input_ids", "attention_mask"]
    if "token_type_ids" in features:
        input_names.append("token_type_ids")
    output_names = [EMBEDDING_OUTPUT] + [logits_output(task) for task in model.task_names]
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    dynamic_axes.update({name: {0: "batch"} for name in output_names})

    # dynamo=False: the TorchScript exporter needs no extra package, while the default
    # torch.export-based one (torch >= 2.9) also needs `onnxscript`. Torch < 2.5 has no
    # `dynamo` argument and uses the TorchScript exporter anyway.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    graph = _OnnxGraph(model)
    # eval_mode: dropout off, so the exported graph is deterministic; modes restored after.
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings come from shape checks inside transformers that are constant for
        # a padded batch; the parity tests check the graph on other shapes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        torch.onnx.export(
            graph,
            tuple(features[name] for name in input_names),
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            **legacy,
        )
    _add_metadata(path, labels_metadata(model.config))
    # Record the limit in force, so the predictor cuts texts exactly where the model does.
    replace(model.config, max_seq_length=model.max_seq_length).to_json(path.parent / CONFIG_FILE)
    model.encoder.tokenizer.save_pretrained(str(path.parent))
    _record_token_limit(path.parent / TOKENIZER_CONFIG_FILE, encoder_token_limit(model.encoder))


def _record_token_limit(tokenizer_config: Path, limit: int | None) -> None:
    """Writes the encoder's own token limit (its position embeddings: 512 for MiniLM) as the tokenizer's
    ``model_max_length``, the most the predictor accepts. sentence-transformers saves its default
    ``max_seq_length`` there (256 for MiniLM), which would refuse a model set to, say, 300 tokens."""
    if limit is None:
        return
    settings = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    settings["model_max_length"] = limit
    tokenizer_config.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Adds ``metadata`` to the graph's ``metadata_props`` (onnxruntime: ``get_modelmeta().custom_metadata_map``)."""
    import onnx

    graph = onnx.load(str(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


# ----------------------------------------------------------------------------- calibration
CALIBRATION_BATCH_SIZE = 16
"""Texts per calibration batch. Batches are sorted by length, so they hold little padding."""


@dataclass(frozen=True)
class CalibrationTexts:
    """Texts to calibrate with, and where they came from (recorded in the int8 graph)."""

    texts: list[str]
    """The texts, each non-empty."""
    source: str
    """Where they came from, for people: ``"bundled dataset (...)"`` or the CSV file's path."""


def bundled_calibration_texts() -> CalibrationTexts:
    """All sentences of the bundled dataset (every split): the default calibration set."""
    return CalibrationTexts(load_bundled()["text"].tolist(), f"bundled dataset ({BUNDLED_CSV.name})")


def csv_calibration_texts(path: str | os.PathLike) -> CalibrationTexts:
    """The ``text`` column of a CSV file, empty texts dropped.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is unreadable, has no ``text`` column, or no non-empty text.
    """
    path = Path(path).expanduser()
    frame, _ = read_text_csv(path)
    if "text" not in frame.columns:
        raise ValueError(f"Calibration file {str(path)!r} has no 'text' column; its columns are {list(frame.columns)}.")
    texts = [text for text in frame["text"] if is_text(text)]
    if not texts:
        raise ValueError(f"Calibration file {str(path)!r} has no non-empty text.")
    return CalibrationTexts(texts, str(path))


def check_calibration_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list, refusing a single string, an empty list and empty or non-string items."""
    if isinstance(texts, str):
        raise TypeError("calibration texts must be a list of strings, got one string.")
    texts = list(texts)
    if not texts:
        raise ValueError("calibration texts are empty; pass at least one text.")
    bad = [i for i, text in enumerate(texts) if not is_text(text)]
    if bad:
        raise ValueError(f"calibration text(s) at index {bad[:10]} are empty or not strings.")
    return texts


class TextCalibrationReader:
    """Tokenised texts for ``onnxruntime.quantization.quantize_static``, one batch per ``get_next``
    (the interface of onnxruntime's ``CalibrationDataReader``).

    Texts are sorted by length and cut into batches of :data:`CALIBRATION_BATCH_SIZE`, so padding
    (whose hidden states are computed but never used) barely enters the measured ranges.
    ``set_range`` and ``len`` let onnxruntime collect one batch at a time (its
    ``CalibStridedMinMax`` option), which bounds memory: without it every intermediate tensor of
    every batch is held until the end.

    Args:
        tokenizer: The export's batching tokenizer (``load_tokenizers``), which cuts and pads.
        texts: The calibration texts.
        input_names: The graph's inputs, e.g. ``["input_ids", "attention_mask", "token_type_ids"]``.
    """

    def __init__(self, tokenizer, texts: Sequence[str], input_names: Sequence[str]) -> None:
        ordered = sorted(texts, key=len)
        self.batches = []
        for start in range(0, len(ordered), CALIBRATION_BATCH_SIZE):
            encoded = encode_batch(tokenizer, ordered[start : start + CALIBRATION_BATCH_SIZE])
            self.batches.append({name: encoded.get(name, np.zeros_like(encoded["input_ids"])) for name in input_names})
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Limits the following ``get_next`` calls to batches ``start_index`` to ``end_index - 1``."""
        self._next, self._end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return self.batches[self._next - 1]


# ----------------------------------------------------------------------------- where the graph is int8
QUANTISED_OP_TYPES = ("MatMul", "Gather")
"""Operators whose weight is stored as int8: the linear layers and the embedding look-ups."""


def weight_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes to quantise: each ``MatMul`` with a weight (a linear layer) and each
    ``Gather`` that looks rows up in a weight (the embeddings).

    The attention products (activation times activation) and the small task heads (``Gemm``)
    stay fp32, as under dynamic quantisation.
    """
    weights = {initializer.name for initializer in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and any(name in weights for name in node.input):
            nodes.append(node.name)
        elif node.op_type == "Gather" and node.input[0] in weights:
            nodes.append(node.name)
    return nodes


def restore_fp32_consumers(model: onnx.ModelProto) -> int:
    """Feeds every consumer of a quantised activation that is not a quantised operator the fp32
    tensor again, then drops the QuantizeLinear/DequantizeLinear nodes nothing reads any more.

    Args:
        model: A QDQ graph from ``quantize_static``; changed in place.

    Returns:
        How many node inputs were pointed back at fp32 tensors.
    """
    graph = model.graph
    quantised_from = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    fp32_of = {node.output[0]: quantised_from[node.input[0]] for node in graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in quantised_from}
    restored = 0
    for node in graph.node:
        if node.op_type in (*QUANTISED_OP_TYPES, "QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            if name in fp32_of:
                node.input[index] = fp32_of[name]
                restored += 1
    for op_type in ("DequantizeLinear", "QuantizeLinear"):  # a Q is unused once its DQs are gone
        read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
        unused = [node for node in graph.node if node.op_type == op_type and node.output[0] not in read]
        for node in unused:
            graph.node.remove(node)
    return restored


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Sets ``metadata_props`` entries (replacing those of the same keys); onnxruntime reads them
    back as ``session.get_modelmeta().custom_metadata_map``."""
    kept = [prop for prop in model.metadata_props if prop.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=str(value))


# ----------------------------------------------------------------------------- quantisation
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


def _check_paths(onnx_path: str | os.PathLike, out_path: str | os.PathLike | None) -> tuple[Path, Path]:
    """The fp32 graph and where its int8 copy goes: beside it, in the same export (a graph belongs to its export)."""
    onnx_path = Path(onnx_path).expanduser()
    out_path = onnx_path.with_name(INT8_FILE) if out_path is None else Path(out_path).expanduser()
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {str(onnx_path)!r}")
    if out_path.parent.resolve() != onnx_path.parent.resolve():
        raise ValueError(f"{str(out_path)!r}: an int8 graph is written into its export's folder "
                         f"({str(onnx_path.parent)!r}), beside the graph it was made from.")
    refuse_saved_model_directory(out_path.parent)
    return onnx_path, out_path


def _finish(out_path: Path, model, metadata: dict[str, str]) -> Path:
    """Writes the quantised ``model`` with ``metadata`` to ``out_path``: into an export of ours, beside its
    place and renamed in, with its digest added to the manifest; into a folder being written (``mtt
    export``'s), as it is (that folder's manifest is written when it is complete)."""
    import onnx

    set_metadata(model, metadata)
    if read_manifest(out_path.parent) is not None:
        add_file(out_path.parent, out_path.name, lambda path: onnx.save(model, str(path)), ONNX_KIND)
    else:
        onnx.save(model, str(out_path))
    return out_path


def quantize_int8(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    calibration: Sequence[str] | CalibrationTexts | None = None,
    method: str = "minmax",
    per_channel: bool = True,
) -> Path:
    """Statically quantises an exported graph: int8 weights, activation scales fixed by calibration.

    The linear layers and embeddings are quantised (:func:`weight_nodes`); only the inputs of the
    integer products are rounded, everything else stays fp32 (:func:`restore_fp32_consumers`). Inputs
    and outputs are those of the fp32 graph, so ``OnnxPredictor`` runs it unchanged.

    Args:
        onnx_path: The fp32 graph from :func:`export_onnx`, with ``config.json`` and the tokenizer
            beside it (calibration tokenises with them).
        out_path: Where to write the int8 graph, in the same folder; default ``model.int8.onnx`` there.
        calibration: Texts whose activations fix the ranges: a list of strings, a
            :class:`CalibrationTexts`, or ``None`` for the 1,800 sentences of the bundled dataset.
        method: One of :data:`CALIBRATION_METHODS`. On a fine-tuned model (see
            ``benchmarks/int8_agreement.py``) ``"minmax"`` agreed with fp32 as well as the others
            and calibrates fastest.
        per_channel: One weight scale per output channel instead of one per matrix: closer to
            fp32 at the same size and speed.

    Returns:
        ``out_path`` as a ``Path``.

    Raises:
        FileNotFoundError: the graph, ``config.json`` or the tokenizer is missing.
        ValueError: an unknown ``method``, empty calibration texts, or ``out_path`` outside the export's
            folder or in a saved torch model's folder.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

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
    return _finish(out_path, model, {
        "int8_method": f"static QDQ (onnxruntime quantize_static), {method} calibration, "
                       f"{_weight_scales(per_channel)} int8 weights, uint8 activations",
        "int8_calibration_source": calibration.source,
        "int8_calibration_texts": str(len(calibration.texts)),
    })


def _weight_scales(per_channel: bool) -> str:
    """How the int8 weights are scaled, in the words the graph's metadata uses."""
    return "per-channel" if per_channel else "per-tensor"


def quantize_dynamic_int8(
    onnx_path: str | os.PathLike, out_path: str | os.PathLike | None = None, per_channel: bool = True
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
    return _finish(out_path, model, {
        "int8_method": f"dynamic (onnxruntime quantize_dynamic), {_weight_scales(per_channel)} int8 weights, "
                       "activation scales per batch",
    })
