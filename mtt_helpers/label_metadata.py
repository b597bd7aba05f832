"""The labels a model's weights were saved with, kept inside the weights file, so an edited ``config.json`` is caught.

``config.json`` names each head's outputs. Reversing or renaming labels there (same count) would
still load and silently give wrong label names, so every weights file carries each task's labels
in its own metadata: ``heads.safetensors`` (safetensors metadata) and every ONNX graph (ONNX
``metadata_props``), under :data:`LABELS_KEY`. Loading compares them with ``config.json``
(:func:`check_saved_labels`). Files saved before this existed carry none and are not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtt_helpers.config import MultiTaskConfig

LABELS_KEY = "mtt_task_labels"
"""Metadata key holding the JSON object ``{task: [labels in head order]}``."""


def labels_metadata(config: MultiTaskConfig) -> dict[str, str]:
    """The metadata entry to store in a weights file written for ``config``."""
    return {LABELS_KEY: json.dumps(config.tasks)}


def check_saved_labels(metadata: dict[str, str] | None, config: MultiTaskConfig, weights: Path,
                       config_path: Path) -> None:
    """Refuses a config whose labels differ from those recorded in the weights' ``metadata``.

    Args:
        metadata: The weights file's metadata (``None`` or without :data:`LABELS_KEY`: not checked).
        config: What ``config_path`` holds.
        weights: The weights file, for the message.
        config_path: The ``config.json``, for the message.

    Raises:
        ValueError: the labels differ (the message names each task, both lists and both files),
            or the metadata is unreadable.
    """
    if not metadata or LABELS_KEY not in metadata:
        return
    try:
        saved = json.loads(metadata[LABELS_KEY])
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        raise ValueError(f"{str(weights)!r}: its label metadata is unreadable ({error}).") from error
    if saved == config.tasks:
        return
    tasks = list(dict.fromkeys([*saved, *config.tasks]))
    details = "; ".join(f"task {task!r}: {config_path.name} has {config.tasks.get(task)}, the weights {saved.get(task)}"
                        for task in tasks if saved.get(task) != config.tasks.get(task))
    raise ValueError(f"{str(config_path)!r} names other labels than {str(weights)!r} was saved with ({details}); "
                     "its predictions would carry wrong label names. Restore the labels the model was saved with.")
