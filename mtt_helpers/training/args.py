"""How a saved model was trained: its ``training_args.json`` read back.

``MultiTaskSentenceTransformer.save(directory, training_args=config, training_data={...})`` writes
``{"train_config": config.to_dict(), "data": {...}}`` (``mtt train`` records the dataset names,
the rows of each split and the seed); :func:`read_training_args` gives back a :class:`TrainConfig`
equal to the one saved, and the data record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mtt_helpers.config import TRAINING_ARGS_FILE
from mtt_helpers.training.config import TrainConfig


def read_training_args(directory: str | os.PathLike) -> tuple[TrainConfig | None, dict[str, Any]]:
    """The training settings and the data record saved with a model.

    Args:
        directory: A saved model folder.

    Returns:
        ``(config, data)``: ``config`` is ``None`` when only data facts were saved.

    Raises:
        FileNotFoundError: the model was saved without training arguments.
        ValueError: the file is unreadable or holds an invalid setting (the message names the file).
    """
    path = Path(directory).expanduser() / TRAINING_ARGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {TRAINING_ARGS_FILE} in {str(path.parent)!r}: it was saved without training_args.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or set(raw) != {"train_config", "data"}:
            raise ValueError("expected an object with the keys 'train_config' and 'data'")
        settings, data = raw["train_config"], raw["data"]
        if not isinstance(data, dict) or not (settings is None or isinstance(settings, dict)):
            raise ValueError("'train_config' must be an object or null, and 'data' an object")
        return (None if settings is None else TrainConfig.from_dict(settings)), data
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"Unreadable training arguments {str(path)!r}: {error}") from error
