"""Saving and loading a multi-task model: safetensors + JSON, never pickle.

The bodies of ``MultiTaskSentenceTransformer.save`` and ``.load``. A saved model is a folder
holding ``config.json`` (the config, whether the encoder was saved, and the fingerprint of the
encoder's weights), ``heads.safetensors`` (its metadata holds each task's labels:
``mtt_helpers.label_metadata``), optionally the encoder in ``encoder/`` and ``training_args.json``
(how it was trained), and ``manifest.json`` listing every file (``mtt_helpers.manifest``). The
folder is written beside its place and renamed in (``mtt_helpers.files.write_atomically``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

from mtt_helpers.config import CONFIG_FILE, ENCODER_DIR, HEADS_FILE, TRAINING_ARGS_FILE, MultiTaskConfig, read_config
from mtt_helpers.files import write_atomically
from mtt_helpers.label_metadata import check_saved_labels, labels_metadata
from mtt_helpers.manifest import MODEL_KIND
from mtt_helpers.model.encoder import load_encoder
from mtt_helpers.model.fingerprint import weights_fingerprint

if TYPE_CHECKING:
    from mtt_helpers.model.multitask import MultiTaskSentenceTransformer


def save_model(model: MultiTaskSentenceTransformer, directory: Path, include_encoder: bool, training_args: Any = None,
               training_data: Mapping[str, Any] | None = None) -> None:
    """Writes ``model`` as the folder ``directory``: see ``MultiTaskSentenceTransformer.save``."""
    record = training_record(training_args, training_data)  # refused before anything is written

    def write(folder: Path) -> None:
        model.config.to_json(folder / CONFIG_FILE, encoder_saved=include_encoder,
                             encoder_sha256=weights_fingerprint(model.encoder.state_dict()))
        heads = {k: v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}
        save_file(heads, folder / HEADS_FILE, metadata=labels_metadata(model.config))
        if include_encoder:
            model.encoder.save(str(folder / ENCODER_DIR), safe_serialization=True)
        if record is not None:
            (folder / TRAINING_ARGS_FILE).write_text(record, encoding="utf-8")

    write_atomically(directory, write, is_dir=True, kind=MODEL_KIND)


def training_record(training_args: Any, training_data: Mapping[str, Any] | None) -> str | None:
    """``training_args.json``'s text, ``{"train_config": {...}, "data": {...}}``; ``None`` when there is
    nothing to save.

    Raises:
        ValueError: ``training_args`` is not a dataclass instance, or either part is not JSON-ready.
    """
    if training_args is None and training_data is None:
        return None
    if training_args is not None and (not dataclasses.is_dataclass(training_args) or isinstance(training_args, type)):
        raise ValueError("training_args must be a TrainConfig (a dataclass instance), "
                         f"got {type(training_args).__name__}.")
    record = {"train_config": dataclasses.asdict(training_args) if training_args is not None else None,
              "data": dict(training_data or {})}
    try:
        return json.dumps(record, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(f"training_args/training_data cannot be saved as JSON: {error}") from error


def load_model(cls: type[MultiTaskSentenceTransformer], directory: Path,
               device: str | None) -> MultiTaskSentenceTransformer:
    """Builds a ``cls`` from a folder written by :func:`save_model`: see ``MultiTaskSentenceTransformer.load``."""
    if not directory.is_dir():
        raise FileNotFoundError(f"Model directory not found: {str(directory)!r}")
    heads_path, config_path = directory / HEADS_FILE, directory / CONFIG_FILE
    if not heads_path.is_file():
        raise FileNotFoundError(f"Missing model file: {str(heads_path)!r}")
    config, metadata = read_config(config_path)
    try:
        with safe_open(heads_path, framework="pt") as weights:
            saved_metadata = weights.metadata()
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"Head weights {str(heads_path)!r} are unreadable: {error}") from error
    check_saved_labels(saved_metadata, config, heads_path, config_path)  # before the slow encoder load
    encoder = _load_saved_encoder(directory, config, metadata, device)
    try:
        model = cls(encoder, config)
    except ValueError as error:  # a value only the encoder can check, e.g. max_seq_length above its limit
        raise ValueError(f"Unusable model config {str(config_path)!r}: {error}") from error
    try:
        model.heads.load_state_dict(load_file(heads_path), strict=True)
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"Head weights {str(heads_path)!r} do not fit the config: {error}") from error
    return model


def _load_saved_encoder(directory: Path, config: MultiTaskConfig, metadata: dict,
                        device: str | None) -> SentenceTransformer:
    """The encoder of a saved model: its own ``encoder/``, or ``config.encoder`` when it was not
    saved; either way refused when its weights differ from the fingerprint in ``config.json``."""
    if metadata.get("encoder_saved", False):
        source = directory / ENCODER_DIR
        if not source.is_dir():
            raise FileNotFoundError(f"Missing encoder directory: {str(source)!r}")
        encoder = load_encoder(source, device=device)
    else:
        source = config.encoder or "all-MiniLM-L6-v2"
        encoder = load_encoder(config.encoder, device=device)
    saved_fingerprint = metadata.get("encoder_sha256")  # absent in models saved before it existed
    if saved_fingerprint is not None and saved_fingerprint != weights_fingerprint(encoder.state_dict()):
        raise ValueError(
            f"{str(directory)!r}: the encoder loaded ({source}) has other weights than the one the heads were "
            "saved with; a fine-tuned encoder must be saved with save(..., include_encoder=True)."
        )
    return encoder
