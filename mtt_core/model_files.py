"""What a saved model and an ONNX export hold: the files' names, ``config.json``, the labels recorded
inside the weights, and the token-limit rule. Read the same way by the torch model and the ONNX runtime.

* :class:`MultiTaskConfig`: the labels of each task, the head sizes and the token limit, read and
  written as ``config.json`` (:meth:`MultiTaskConfig.from_json`, :meth:`MultiTaskConfig.to_json`);
  every value is checked whenever a config is built or read.
* :func:`check_max_seq_length`: the one rule for a token limit.
* :func:`labels_metadata` / :func:`check_saved_labels`: each weights file (``heads.safetensors``, every
  ONNX graph) carries its task labels, so a ``config.json`` edited to other labels is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mtt_core.labels import SENTIMENT_LABELS, TOPIC_LABELS

CONFIG_FILE = "config.json"
"""The configuration file of a saved torch model and of an ONNX export."""

HEADS_FILE = "heads.safetensors"
"""The head weights of a saved torch model."""

ENCODER_DIR = "encoder"
"""The sub-folder holding a saved torch model's own encoder."""

TRAINING_ARGS_FILE = "training_args.json"
"""How a saved model was trained: the training settings and the data used."""

ONNX_FILE = "model.onnx"
"""The fp32 graph of an ONNX export."""

INT8_FILE = "model.int8.onnx"
"""The int8 graph of an ONNX export, beside :data:`ONNX_FILE`."""

EMBEDDING_OUTPUT = "embedding"
"""Name of the graph output holding the L2-normalised sentence embeddings."""

INT8_METADATA = {
    "int8_method": "how the graph was quantised (static or dynamic, calibration method, weight scales)",
    "int8_calibration_source": "where the calibration texts came from (static quantisation only)",
    "int8_calibration_texts": "how many calibration texts there were (static quantisation only)",
}
"""Keys an int8 graph's ``metadata_props`` records, with their meaning. ``int8_method`` is what marks
a graph as int8: the ONNX runtime refuses an int8 file name without it."""

OPSETS = range(14, 24)
"""ONNX opsets the export writes: from 14 (what the encoder's attention needs) to 23 (the newest the
pinned torch writes). ``mtt export --opset`` is checked against this range before anything loads."""

LABELS_KEY = "mtt_task_labels"
"""Metadata key of every weights file: the JSON object ``{task: [labels in head order]}``."""

METADATA_KEYS = ("encoder_saved", "encoder_sha256")
"""Keys ``config.json`` may hold besides the config fields: facts about the saved files."""

MIN_SEQ_LENGTH = 3
"""The smallest token limit: the encoder's two special tokens ([CLS], [SEP]) and one token of text."""

RECIPE_MAX_SEQ_LENGTH = 128
"""The recipe's token limit: it cuts under 1% of the tweets and headlines and halves the cost of the longest batches."""


def logits_output(task: str) -> str:
    """Name of the graph output holding ``task``'s logits, e.g. ``topic_logits``."""
    return f"{task}_logits"


def check_max_seq_length(value: Any, limit: int | None = None) -> int:
    """The one rule for a token limit: an integer from :data:`MIN_SEQ_LENGTH` to ``limit``.

    Args:
        value: The token limit asked for.
        limit: The encoder's own maximum (its position embeddings: 512 for MiniLM), when known.

    Raises:
        ValueError: naming the value and the range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_SEQ_LENGTH or (
            limit is not None and value > limit):
        upper = limit if limit is not None else "the encoder's limit"
        raise ValueError(f"max_seq_length must be an integer from {MIN_SEQ_LENGTH} (two special tokens and one of "
                         f"text) to {upper}, got {value!r}")
    return value


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
    """Size of the sentence embedding the heads read; ``None`` takes it from the encoder when the model is built."""

    hidden_dim: int = 192
    """Width of each head's hidden layer (half the embedding)."""

    dropout: float = 0.1
    """Dropout between the head's two layers, active only in training mode."""

    max_seq_length: int | None = RECIPE_MAX_SEQ_LENGTH
    """Inputs are cut at this many tokens, in training, prediction, export and serving alike
    (:func:`check_max_seq_length`; the encoder's own maximum is checked when it loads). ``None``: the
    encoder's own limit (256 for all-MiniLM-L6-v2)."""

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems) + ".")

    @property
    def task_names(self) -> list[str]:
        """The task names, in the order of the heads."""
        return list(self.tasks)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> MultiTaskConfig:
        """Reads a ``config.json`` written by :meth:`to_json` (see :func:`read_config`)."""
        return read_config(path)[0]

    def to_json(self, path: str | os.PathLike, **metadata: Any) -> None:
        """Writes the config, plus ``metadata`` (keys from :data:`METADATA_KEYS`), as JSON."""
        unknown = sorted(set(metadata) - set(METADATA_KEYS))
        if unknown:
            raise ValueError(f"Unknown config metadata {unknown}; allowed: {list(METADATA_KEYS)}.")
        Path(path).write_text(json.dumps({**asdict(self), **metadata}, indent=2), encoding="utf-8")


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
    """Every value of ``config`` of the wrong type or out of range, each naming its key and value."""
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
    ]
    problems += [f"{key} must be {allowed}, got {getattr(config, key)!r}" for key, ok, allowed in checks if not ok]
    if config.max_seq_length is not None:
        try:
            check_max_seq_length(config.max_seq_length)
        except ValueError as error:
            problems.append(str(error))
    return problems


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
        ValueError: the file is not UTF-8 JSON holding an object, has a key that is neither a config
            field nor one of :data:`METADATA_KEYS`, or holds invalid values; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Missing model file: {str(path)!r}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
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
    """True when ``directory`` holds ``config.json`` and ``heads.safetensors``, as a saved torch model does."""
    directory = Path(directory)
    return (directory / CONFIG_FILE).is_file() and (directory / HEADS_FILE).is_file()


def refuse_saved_model_directory(directory: Path) -> None:
    """An export writes ``config.json`` and tokenizer files; in a saved torch model's directory that
    would replace the model's own config and break its ``load()``."""
    if is_saved_model(directory):
        raise ValueError(f"{str(directory)!r} holds a saved torch model ({CONFIG_FILE} + {HEADS_FILE}); writing an "
                         "ONNX export there would overwrite its config. Export into another directory.")


def labels_metadata(config: MultiTaskConfig) -> dict[str, str]:
    """The metadata entry to store in a weights file written for ``config``."""
    return {LABELS_KEY: json.dumps(config.tasks)}


def check_saved_labels(metadata: dict[str, str] | None, config: MultiTaskConfig, weights: Path,
                       config_path: Path) -> None:
    """Refuses a config whose labels differ from those recorded in the weights' ``metadata``.

    Args:
        metadata: The weights file's metadata.
        config: What ``config_path`` holds.
        weights: The weights file, for the message.
        config_path: The ``config.json``, for the message.

    Raises:
        ValueError: the weights record no labels, unreadable ones, or other ones (the message names
            each task, both lists and both files).
    """
    if not metadata or LABELS_KEY not in metadata:
        raise ValueError(f"{str(weights)!r} records no task labels ({LABELS_KEY}); it was not written by this "
                         "package's save() or export, so its outputs cannot be named.")
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
