"""Export the whole multi-task model as one ONNX graph (transformer -> mean pooling -> L2 normalise -> every head).

``export_onnx`` writes the graph, plus ``config.json``, the tokenizer files and ``manifest.json``
beside it, so the folder is self-contained: ``OnnxPredictor`` (``mtt_helpers.onnx.predictor``) runs
it without torch. The graph's metadata holds each task's labels, which the predictor compares with
``config.json`` (``mtt_helpers.label_metadata``). The folder is written beside its place and renamed
in, and replaces only an earlier export (``mtt_helpers.manifest.check_replaceable``).

Typical use::

    export_onnx(model, "onnx_model/model.onnx")
    quantize_int8("onnx_model/model.onnx", "onnx_model/model.int8.onnx")
    OnnxPredictor("onnx_model", onnx_file="model.int8.onnx").predict(["Great match!"])
"""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from mtt_helpers.config import CONFIG_FILE
from mtt_helpers.files import write_atomically
from mtt_helpers.label_metadata import labels_metadata
from mtt_helpers.manifest import ONNX_KIND
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode, transformer_of
from mtt_helpers.onnx.layout import EMBEDDING_OUTPUT, ONNX_FILE, logits_output

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
        tokens = transformer_of(self.model)(**inputs).last_hidden_state
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


def export_onnx(model: MultiTaskSentenceTransformer, path: str | os.PathLike, opset: int = 17) -> Path:
    """Exports the whole multi-task model as one ONNX graph, with its config and tokenizer, as a new folder.

    Inputs are ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer
    produces them), int64, shape ``(batch, sequence)`` with both axes dynamic. Outputs are
    ``embedding`` ``(batch, 384)`` and ``<task>_logits`` ``(batch, num_classes)`` per task.

    Args:
        model: The model to export; its heads and encoder are exported as they are, at its
            ``max_seq_length``.
        path: The ``.onnx`` file to write. A path without the ``.onnx`` suffix is taken as the
            folder and ``model.onnx`` is written inside it.
        opset: ONNX opset version.

    Returns:
        The path of the ``.onnx`` file. ``config.json`` and the tokenizer files lie beside it.

    Raises:
        ValueError: the encoder's pipeline is not supported, or the folder is a symbolic link.
        FileExistsError: the folder holds anything but an earlier export's own files.
    """
    check_exportable(model)
    path = Path(path).expanduser()
    if path.suffix != ".onnx":
        path = path / ONNX_FILE
    write_atomically(path.parent, lambda folder: write_export_files(model, folder / path.name, opset),
                     is_dir=True, kind=ONNX_KIND)
    return path


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
    # Record the limit actually in force so the predictor truncates exactly like the encoder.
    replace(model.config, max_seq_length=int(model.encoder.max_seq_length)).to_json(path.parent / CONFIG_FILE)
    model.encoder.tokenizer.save_pretrained(str(path.parent))


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Adds ``metadata`` to the graph's ``metadata_props`` (onnxruntime: ``get_modelmeta().custom_metadata_map``)."""
    import onnx

    graph = onnx.load(str(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))
