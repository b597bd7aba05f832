"""The model's configuration and the files of a saved model, shared by torch and ONNX (no torch here).

* ``MultiTaskConfig``: the labels of each task and the head sizes, read and written as
  ``config.json`` by :meth:`MultiTaskConfig.from_json` / :meth:`MultiTaskConfig.to_json`,
  the one place that checks that file (for the torch model and the ONNX predictor alike).
* ``is_saved_model``: recognises a directory holding a saved model's files.
* ``config_problems``: every out-of-range or wrongly typed value, checked whenever a config is
  built or read (the encoder's own token limit is checked when the encoder loads).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

TOPIC_LABELS = ["sports", "health", "tech", "finance", "education", "other"]
"""Task A classes, in the order of the topic head's outputs."""

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
"""Task B classes, in the order of the sentiment head's outputs."""

CONFIG_FILE = "config.json"
"""The configuration file of a saved torch model and of an ONNX export."""

HEADS_FILE = "heads.safetensors"
"""The head weights of a saved torch model."""

ENCODER_DIR = "encoder"
"""The sub-folder holding a saved torch model's own encoder (``save(include_encoder=True)``)."""

TRAINING_ARGS_FILE = "training_args.json"
"""How a saved model was trained (``save(..., training_args=...)``): the training settings and the data used."""

METADATA_KEYS = ("encoder_saved", "encoder_sha256")
"""Keys ``config.json`` may hold besides the config fields: facts about the saved files."""


def _default_tasks() -> dict[str, list[str]]:
    return {"topic": list(TOPIC_LABELS), "sentiment": list(SENTIMENT_LABELS)}


@dataclass
class MultiTaskConfig:
    """Everything needed to rebuild a model's heads; saved as ``config.json``."""

    tasks: dict[str, list[str]] = field(default_factory=_default_tasks)
    """Task name -> its class labels, in the order of the head's outputs."""

    encoder: str | None = None
    """Hub id or path of the base encoder; ``None`` means all-MiniLM-L6-v2 (offline package or hub)."""

    embedding_dim: int | None = None
    """Size of the sentence embedding the heads read; ``None`` takes it from the encoder
    (``get_sentence_embedding_dimension()``) when the model is built."""

    hidden_dim: int = 192
    """Width of each head's hidden layer (half the embedding, as in the seed design)."""

    dropout: float = 0.1
    """Dropout between the head's two layers, active only in training mode."""

    max_seq_length: int | None = None
    """Truncate inputs to this many tokens (1 to the encoder's position limit, 512 for MiniLM);
    ``None`` keeps the encoder's own (256). ``train`` sets it to the length a model was trained at,
    so a saved, exported or served model runs at that length."""

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems) + ".")

    @property
    def task_names(self) -> list[str]:
        """The task names, in the order of the heads (what every model and predictor reports)."""
        return list(self.tasks)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "MultiTaskConfig":
        """Reads a ``config.json`` written by :meth:`to_json`.

        Raises:
            ValueError: the file is not UTF-8 JSON holding an object, has a key that is neither a
                config field nor one of :data:`METADATA_KEYS`, or holds invalid values.
        """
        return read_config(path)[0]

    def to_json(self, path: str | os.PathLike, **metadata: Any) -> None:
        """Writes the config, plus ``metadata`` (keys from :data:`METADATA_KEYS`), as JSON."""
        unknown = sorted(set(metadata) - set(METADATA_KEYS))
        if unknown:
            raise ValueError(f"Unknown config metadata {unknown}; allowed: {list(METADATA_KEYS)}.")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({**asdict(self), **metadata}, f, indent=2)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label_problems(name: Any, labels: Any) -> list[str]:
    if not isinstance(name, str) or not name.strip():
        return [f"task names must be non-empty strings, got {name!r}"]
    if not isinstance(labels, list) or len(labels) < 2:
        return [f"task {name!r} needs a list of at least two labels, got {labels!r}"]
    if not all(isinstance(label, str) and label.strip() for label in labels):
        return [f"task {name!r}: labels must be non-empty strings, got {labels!r}"]
    if len(set(labels)) != len(labels):
        return [f"task {name!r} has duplicate labels: {labels!r}"]
    return []


def config_problems(config: MultiTaskConfig) -> list[str]:
    """Every value of ``config`` of the wrong type or out of range, each naming its key and value.

    The upper limit of ``max_seq_length`` is the encoder's, checked when the encoder is loaded
    (``MultiTaskSentenceTransformer``, ``OnnxPredictor``).
    """
    if not isinstance(config.tasks, dict) or not config.tasks:
        return [f"A multi-task model needs at least one task, got tasks={config.tasks!r}"]
    problems = [problem for name, labels in config.tasks.items() for problem in _label_problems(name, labels)]
    checks = [
        ("encoder", config.encoder is None or (isinstance(config.encoder, str) and bool(config.encoder.strip())),
         "a hub id or path, or null"),
        ("embedding_dim", config.embedding_dim is None or (_is_int(config.embedding_dim) and config.embedding_dim >= 1),
         "a positive integer or null"),
        ("hidden_dim", _is_int(config.hidden_dim) and config.hidden_dim >= 1, "a positive integer"),
        ("dropout", isinstance(config.dropout, (int, float)) and not isinstance(config.dropout, bool)
         and 0 <= config.dropout < 1, "a number in [0, 1)"),
        ("max_seq_length", config.max_seq_length is None
         or (_is_int(config.max_seq_length) and config.max_seq_length >= 1), "a positive integer or null"),
    ]
    return problems + [f"{key} must be {allowed}, got {getattr(config, key)!r}"
                       for key, ok, allowed in checks if not ok]


def _metadata_problems(metadata: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(metadata.get("encoder_saved", False), bool):
        problems.append(f"encoder_saved must be true or false, got {metadata['encoder_saved']!r}")
    digest = metadata.get("encoder_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        problems.append(f"encoder_sha256 must be 64 hex digits, got {digest!r}")
    return problems


def read_config(path: str | os.PathLike) -> tuple[MultiTaskConfig, dict[str, Any]]:
    """Reads ``config.json``: the config and the metadata saved beside it.

    Returns:
        ``(config, metadata)``; ``metadata`` holds the :data:`METADATA_KEYS` present in the file.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: see :meth:`MultiTaskConfig.from_json`; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Missing model file: {str(path)!r}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        known = {item.name for item in fields(MultiTaskConfig)}
        unknown = sorted(set(raw) - known - set(METADATA_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}")
        metadata = {key: raw[key] for key in METADATA_KEYS if key in raw}
        problems = _metadata_problems(metadata)
        if problems:
            raise ValueError("; ".join(problems))
        return MultiTaskConfig(**{key: value for key, value in raw.items() if key in known}), metadata
    except (ValueError, TypeError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"Unreadable model config {str(path)!r}: {error}") from error


def is_saved_model(directory: str | os.PathLike) -> bool:
    """True when ``directory`` holds ``config.json`` and ``heads.safetensors``, as a saved torch model
    does (an ONNX export writes its own ``config.json`` and must never write into one). Whether a
    folder may be *replaced* is decided by ``mtt_helpers.manifest.check_replaceable`` alone."""
    directory = Path(directory)
    return (directory / CONFIG_FILE).is_file() and (directory / HEADS_FILE).is_file()
