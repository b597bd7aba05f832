"""Saving and loading a multi-task model: safetensors + JSON, never pickle.

The bodies of ``MultiTaskSentenceTransformer.save`` and ``.load``. A saved model is a directory
holding ``config.json`` (the config, whether the encoder was saved, and the fingerprint of the
encoder's weights), ``heads.safetensors`` and, optionally, the encoder in ``encoder/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

from mtt_helpers.config import CONFIG_FILE, ENCODER_DIR, HEADS_FILE, MultiTaskConfig, is_saved_model, read_config
from mtt_helpers.files import apply_ordinary_permissions
from mtt_helpers.model.encoder import load_encoder
from mtt_helpers.model.fingerprint import weights_fingerprint

if TYPE_CHECKING:
    from mtt_helpers.model.multitask import MultiTaskSentenceTransformer


def save_model(model: MultiTaskSentenceTransformer, directory: Path, include_encoder: bool) -> None:
    """Writes ``model`` into ``directory``: see ``MultiTaskSentenceTransformer.save``."""
    _clear_model_directory(directory)
    model.config.to_json(
        directory / CONFIG_FILE, encoder_saved=include_encoder,
        encoder_sha256=weights_fingerprint(model.encoder.state_dict()),
    )
    save_file({k: v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}, directory / HEADS_FILE)
    if include_encoder:
        model.encoder.save(str(directory / ENCODER_DIR), safe_serialization=True)
    for name in (CONFIG_FILE, HEADS_FILE, ENCODER_DIR):
        if (directory / name).exists():
            apply_ordinary_permissions(directory / name)  # safetensors writes 0600


def load_model(cls: type[MultiTaskSentenceTransformer], directory: Path,
               device: str | None) -> MultiTaskSentenceTransformer:
    """Builds a ``cls`` from a directory written by :func:`save_model`: see ``MultiTaskSentenceTransformer.load``."""
    if not directory.is_dir():
        raise FileNotFoundError(f"Model directory not found: {str(directory)!r}")
    if not (directory / HEADS_FILE).is_file():
        raise FileNotFoundError(f"Missing model file: {str(directory / HEADS_FILE)!r}")
    config, metadata = read_config(directory / CONFIG_FILE)
    model = cls(_load_saved_encoder(directory, config, metadata, device), config)
    try:
        model.heads.load_state_dict(load_file(directory / HEADS_FILE), strict=True)
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"Head weights {str(directory / HEADS_FILE)!r} do not fit the config: {error}") from error
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


def _clear_model_directory(directory: Path) -> None:
    """Creates ``directory``, or removes a saved model's own files from it; refuses anything else."""
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"Cannot save a model to {str(directory)!r}: it is a file.")
    if directory.is_dir() and any(directory.iterdir()):
        if not is_saved_model(directory):
            raise FileExistsError(
                f"Cannot save a model into {str(directory)!r}: it is not empty and holds no saved model "
                f"({CONFIG_FILE} + {HEADS_FILE}). Use a new or empty directory."
            )
        for name in (CONFIG_FILE, HEADS_FILE):
            (directory / name).unlink()
        if (directory / ENCODER_DIR).is_dir():
            shutil.rmtree(directory / ENCODER_DIR)
    directory.mkdir(parents=True, exist_ok=True)
