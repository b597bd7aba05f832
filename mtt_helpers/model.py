"""A multi-task Sentence Transformer: one shared encoder, one small MLP head per task.

Reads top to bottom:

1. ``MLPHead``: Linear(384 -> 192) -> GELU -> Dropout -> Linear(192 -> classes).
2. ``MultiTaskConfig``: the labels of each task and the sizes; saved as JSON.
3. ``MultiTaskSentenceTransformer``: tokenize -> encoder (once) -> every head.
   ``predict`` gives a table, ``save``/``load`` use safetensors + JSON (no pickle).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from torch import nn

from mtt_helpers.encoder import EMBEDDING_DIM, check_texts, load_encoder

TOPIC_LABELS = ["sports", "health", "tech", "finance", "education", "other"]
"""Task A classes, in the order of the topic head's outputs."""

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
"""Task B classes, in the order of the sentiment head's outputs."""

PREDICTION_COLUMN = {"topic": "text_class", "sentiment": "sentiment"}
"""Column name of each task's predicted label in ``predict``'s table."""

CONFIG_FILE = "config.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"

_TOKENIZE_CHUNK = 1024
"""Texts tokenized per call before sorting; bounds the memory of the padded chunk."""


class MLPHead(nn.Module):
    """A two-layer classifier on top of a sentence embedding.

    GELU is the activation MiniLM itself uses. Dropout regularises the small head
    when it is trained on a few thousand examples.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dense = nn.Linear(input_dim, hidden_dim)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Maps ``(batch, input_dim)`` embeddings to ``(batch, num_classes)`` logits."""
        return self.classifier(self.dropout(self.activation(self.dense(embeddings))))


def _default_tasks() -> dict[str, list[str]]:
    return {"topic": list(TOPIC_LABELS), "sentiment": list(SENTIMENT_LABELS)}


@dataclass
class MultiTaskConfig:
    """Everything needed to rebuild a model's heads; saved as ``config.json``."""

    tasks: dict[str, list[str]] = field(default_factory=_default_tasks)
    """Task name -> its class labels, in the order of the head's outputs."""

    encoder: str | None = None
    """Hub id or path of the base encoder; ``None`` means all-MiniLM-L6-v2 (offline package or hub)."""

    embedding_dim: int = EMBEDDING_DIM
    """Size of the sentence embedding the heads read."""

    hidden_dim: int = 192
    """Width of each head's hidden layer (half the embedding, as in the seed design)."""

    dropout: float = 0.1
    """Dropout between the head's two layers, active only in training mode."""

    max_seq_length: int | None = None
    """Truncate inputs to this many tokens; ``None`` keeps the encoder's own limit (256)."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("A multi-task model needs at least one task.")
        for name, labels in self.tasks.items():
            if len(labels) < 2:
                raise ValueError(f"Task {name!r} needs at least two labels, got {labels!r}.")
            if len(set(labels)) != len(labels):
                raise ValueError(f"Task {name!r} has duplicate labels: {labels!r}.")


class MultiTaskSentenceTransformer(nn.Module):
    """One Sentence Transformer encoder shared by several classification heads.

    Args:
        encoder: A loaded Sentence Transformer (``None`` loads ``config.encoder``).
        config: Task labels and head sizes; defaults to topic + sentiment.
    """

    def __init__(self, encoder: SentenceTransformer | None = None, config: MultiTaskConfig | None = None) -> None:
        super().__init__()
        self.config = config or MultiTaskConfig()
        self.encoder = encoder if encoder is not None else load_encoder(self.config.encoder)
        if self.config.max_seq_length is not None:
            self.encoder.max_seq_length = self.config.max_seq_length
        self.heads = nn.ModuleDict(
            {
                task: MLPHead(self.config.embedding_dim, self.config.hidden_dim, len(labels), self.config.dropout)
                for task, labels in self.config.tasks.items()
            }
        )
        self.to(self.encoder.device)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def task_names(self) -> list[str]:
        return list(self.config.tasks)

    # ------------------------------------------------------------------ forward
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenizes sentences and moves the tensors to the model's device."""
        texts = check_texts(texts)
        # sentence-transformers >= 6 renamed tokenize() to preprocess(); Colab may have either.
        tokenize = getattr(self.encoder, "preprocess", None) or self.encoder.tokenize
        features = tokenize(texts)
        # Newer sentence-transformers versions add non-tensor entries; keep them as they are.
        return {
            key: value.to(self.device) if isinstance(value, torch.Tensor) else value
            for key, value in features.items()
        }

    def encode_features(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Runs the encoder once: token ids -> mean-pooled, L2-normalised embeddings."""
        output = self.encoder(dict(features))
        # all-MiniLM-L6-v2 ends in a Normalize module already; normalising again is a
        # no-op there and makes any other encoder behave the same way.
        return F.normalize(output["sentence_embedding"], p=2, dim=1)

    def classify(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Applies every head to precomputed embeddings (used with a frozen, cached encoder)."""
        return {task: head(embeddings) for task, head in self.heads.items()}

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One encoder pass feeds all heads.

        Args:
            features: Output of :meth:`tokenize`.

        Returns:
            ``{"embedding": (batch, 384), task: (batch, num_classes) logits, ...}``.
        """
        embeddings = self.encode_features(features)
        return {"embedding": embeddings, **self.classify(embeddings)}

    # --------------------------------------------------------------- inference
    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Embeds sentences through the model's own encoder pass, in token-count-sorted batches.

        Returns:
            A ``(len(texts), 384)`` CPU tensor in the input order.
        """
        return self._run_batches(texts, batch_size)["embedding"]

    @torch.no_grad()
    def predict_logits(self, texts: Sequence[str], batch_size: int = 32) -> dict[str, torch.Tensor]:
        """Logits of every head (and the embeddings), in the input order, on the CPU."""
        return self._run_batches(texts, batch_size)

    def _token_rows(self, texts: list[str]) -> tuple[list[dict[str, torch.Tensor]], dict, set[str]]:
        """Tokenizes every text once, through the encoder's own tokenization, and unpads it.

        Texts are tokenized in chunks (each padded to its own longest text, which bounds
        memory); the padding is then cut off again using the attention mask.

        Returns:
            One ``{name: tensor}`` per text, the entries that are not per-text tensors (e.g. a
            ``modality`` string, shared by every batch), and the names of the token-level
            tensors (``input_ids``, ``attention_mask``, ...), which are stored unpadded.
        """
        left = self.encoder.tokenizer.padding_side == "left"
        rows: list[dict[str, torch.Tensor]] = []
        shared: dict = {}
        token_keys: set[str] = set()
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = texts[start : start + _TOKENIZE_CHUNK]
            features = self.tokenize(chunk)
            mask = features["attention_mask"]
            per_text = {}
            for key, value in features.items():
                if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == len(chunk):
                    per_text[key] = value.cpu()
                    if value.shape == mask.shape:
                        token_keys.add(key)
                else:
                    shared[key] = value
            width = mask.shape[1]
            for i, length in enumerate(mask.sum(dim=1).tolist()):
                row = {}
                for key, value in per_text.items():
                    if key in token_keys:
                        value = value[i, width - length :] if left else value[i, :length]
                    else:
                        value = value[i]
                    row[key] = value.clone()  # a copy, so the padded chunk can be freed
                rows.append(row)
        return rows, shared, token_keys

    def _pad_batch(self, rows: list[dict[str, torch.Tensor]], shared: dict, token_keys: set[str]) -> dict:
        """Pads rows from :meth:`_token_rows` to the batch's longest, as the tokenizer does."""
        left = self.encoder.tokenizer.padding_side == "left"
        width = max(len(row["attention_mask"]) for row in rows)
        pad_values = {"input_ids": self.encoder.tokenizer.pad_token_id or 0}
        batch = dict(shared)
        for key in rows[0]:
            if key not in token_keys:
                batch[key] = torch.stack([row[key] for row in rows]).to(self.device)
                continue
            padded = torch.full((len(rows), width), pad_values.get(key, 0), dtype=rows[0][key].dtype)
            for i, row in enumerate(rows):
                if left:
                    padded[i, width - len(row[key]) :] = row[key]
                else:
                    padded[i, : len(row[key])] = row[key]
            batch[key] = padded.to(self.device)
        return batch

    def _run_batches(self, texts: Sequence[str], batch_size: int) -> dict[str, torch.Tensor]:
        texts = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        was_training = self.training
        self.eval()
        # Sort by token count, not by characters as SentenceTransformer.encode does: characters
        # are a poor proxy (an emoji or a rare word is several tokens), and every padding token
        # costs as much encoder compute as a real one. Tokenize once, sort, batch, restore.
        rows, shared, token_keys = self._token_rows(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(rows[i]["attention_mask"]))
        chunks: dict[str, list[torch.Tensor]] = {}
        try:
            for start in range(0, len(texts), batch_size):
                batch = self._pad_batch([rows[i] for i in order[start : start + batch_size]], shared, token_keys)
                for key, value in self(batch).items():
                    chunks.setdefault(key, []).append(value.float().cpu())
        finally:
            self.train(was_training)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return {key: torch.cat(values)[inverse] for key, values in chunks.items()}

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> pd.DataFrame:
        """Classifies sentences for every task.

        Returns:
            A DataFrame with ``sentence``, one label column per task (``text_class``
            for topic, ``sentiment`` for sentiment) and ``prob_<task>_<label>`` columns.
        """
        texts = check_texts(texts)
        logits = self.predict_logits(texts, batch_size)
        table = pd.DataFrame({"sentence": texts})
        probabilities = {task: logits[task].softmax(dim=1) for task in self.config.tasks}
        for task, labels in self.config.tasks.items():
            table[PREDICTION_COLUMN.get(task, task)] = [labels[i] for i in probabilities[task].argmax(dim=1).tolist()]
        for task, labels in self.config.tasks.items():
            probs = probabilities[task]
            for j, label in enumerate(labels):
                table[f"prob_{task}_{label}"] = probs[:, j].numpy()
        return table

    # ------------------------------------------------------------ save / load
    def save(self, directory: str | os.PathLike, include_encoder: bool = True) -> None:
        """Writes ``config.json``, ``heads.safetensors`` and (optionally) ``encoder/``.

        Args:
            directory: Created if missing.
            include_encoder: Save the encoder weights too. Needed whenever the encoder
                was fine-tuned; with a frozen encoder ``False`` saves ~90 MB and
                ``load`` rebuilds it from ``config.encoder``.
        """
        os.makedirs(directory, exist_ok=True)
        config = asdict(self.config)
        config["encoder_saved"] = include_encoder
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        state = {key: value.detach().cpu().contiguous() for key, value in self.heads.state_dict().items()}
        save_file(state, os.path.join(directory, HEADS_FILE))
        if include_encoder:
            self.encoder.save(os.path.join(directory, ENCODER_DIR), safe_serialization=True)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> "MultiTaskSentenceTransformer":
        """Loads a model written by :meth:`save`. Never unpickles anything.

        Raises:
            FileNotFoundError: the directory or one of its files is missing.
            ValueError: ``config.json`` or the weights are unreadable or do not fit.
        """
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"Model directory not found: {directory!r}")
        config_path = os.path.join(directory, CONFIG_FILE)
        heads_path = os.path.join(directory, HEADS_FILE)
        for path in (config_path, heads_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Missing model file: {path!r}")
        try:
            with open(config_path, encoding="utf-8") as f:
                raw = json.load(f)
            encoder_saved = raw.pop("encoder_saved", False)
            config = MultiTaskConfig(**raw)
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as error:
            raise ValueError(f"Unreadable model config {config_path!r}: {error}") from error
        if encoder_saved:
            encoder_path = os.path.join(directory, ENCODER_DIR)
            if not os.path.isdir(encoder_path):
                raise FileNotFoundError(f"Missing encoder directory: {encoder_path!r}")
            encoder = load_encoder(encoder_path, device=device)
        else:
            encoder = load_encoder(config.encoder, device=device)
        model = cls(encoder, config)
        try:
            state = load_file(heads_path)
            model.heads.load_state_dict(state, strict=True)
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(f"Head weights {heads_path!r} do not fit the config: {error}") from error
        model.to(model.encoder.device)
        model.eval()
        return model
