"""Chapter 02: one shared encoder, one small MLP head per task, and the model's own files.

``MultiTaskSentenceTransformer``: tokenize -> encoder (once) -> every head (:class:`MLPHead`).
``predict`` gives a table; ``save``/``load`` write and read safetensors + JSON (never pickle), and
``load`` reads back only what ``save`` wrote: every file's digest, the labels recorded inside the head
weights, finite weights, and the encoder's fingerprint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from torch import nn

from mtt_core.files import MODEL_KIND, check_replaceable, verify_files, write_atomically
from mtt_core.model_files import (
    CONFIG_FILE, ENCODER_DIR, HEADS_FILE, TRAINING_ARGS_FILE, MultiTaskConfig, check_max_seq_length,
    check_saved_labels, labels_metadata, read_config,
)
from mtt_core.predictions import check_texts, predictions_table, run_token_sorted
from mtt_helpers.encoder import encoder_token_limit, load_encoder


class MLPHead(nn.Module):
    """Linear(input -> hidden) -> GELU -> Dropout -> Linear(hidden -> classes), on a sentence embedding.

    GELU is the activation MiniLM itself uses; dropout regularises the small head when it is trained
    on a few thousand examples.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dense = nn.Linear(input_dim, hidden_dim)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(batch, input_dim)`` embeddings -> ``(batch, num_classes)`` logits."""
        return self.classifier(self.dropout(self.activation(self.dense(embeddings))))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Puts ``module`` in eval mode, then gives every submodule back its own previous mode."""
    modes = [(child, child.training) for child in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for child, training in modes:
            child.training = training


def weights_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of every tensor of ``state``, in name order: each one's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class MultiTaskSentenceTransformer(nn.Module):
    """One Sentence Transformer encoder shared by several classification heads.

    Built in eval mode (dropout off); training switches modes and gives them back.

    Args:
        encoder: A loaded Sentence Transformer (``None`` loads ``config.encoder``). The model reads it
            and never changes its settings: its own token limit lives in ``config.max_seq_length``.
        config: Task labels, head sizes and the token limit; defaults to topic + sentiment at 128
            tokens. ``self.config`` is a copy with ``embedding_dim`` filled in from the encoder.

    Raises:
        ValueError: ``config.embedding_dim`` differs from the encoder's, or ``config.max_seq_length``
            is above the encoder's limit.
    """

    def __init__(self, encoder: SentenceTransformer | None = None, config: MultiTaskConfig | None = None) -> None:
        super().__init__()
        config = config or MultiTaskConfig()
        self.encoder = encoder if encoder is not None else load_encoder(config.encoder)
        # sentence-transformers >= 6 renamed get_sentence_embedding_dimension to get_embedding_dimension.
        dimension = getattr(self.encoder, "get_embedding_dimension", None) or self.encoder.get_sentence_embedding_dimension
        dim = dimension() or config.embedding_dim
        if dim is None or config.embedding_dim not in (None, dim):
            raise ValueError(f"config.embedding_dim={config.embedding_dim} but the encoder's embeddings have {dim}.")
        if config.max_seq_length is not None:
            check_max_seq_length(config.max_seq_length, encoder_token_limit(self.encoder))
        self.config = replace(config, embedding_dim=dim)
        self.heads = nn.ModuleDict(
            {task: MLPHead(dim, config.hidden_dim, len(labels), config.dropout) for task, labels in config.tasks.items()}
        )
        self.to(self.encoder.device)
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the model's weights are: inputs are moved here."""
        return next(self.parameters()).device

    @property
    def task_names(self) -> list[str]:
        return self.config.task_names

    @property
    def max_seq_length(self) -> int:
        """Inputs are cut at this many tokens: ``config.max_seq_length``, else the encoder's own limit."""
        return self.config.max_seq_length or int(self.encoder.max_seq_length)

    @property
    def transformer(self) -> nn.Module:
        """The Hugging Face model inside the encoder (a BertModel for MiniLM): its layers are what fine-tuning trains."""
        return self.encoder[0].auto_model

    def set_max_seq_length(self, max_seq_length: int) -> None:
        """Cuts inputs at ``max_seq_length`` tokens from now on (kept by ``save``, export and serving).

        Raises:
            ValueError: outside the range of ``mtt_core.model_files.check_max_seq_length``, up to the encoder's limit.
        """
        check_max_seq_length(max_seq_length, encoder_token_limit(self.encoder))
        self.config = replace(self.config, max_seq_length=max_seq_length)

    # ------------------------------------------------------------------ forward
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids of a batch, cut at :attr:`max_seq_length` and padded to its longest text (CPU
        tensors: the caller moves them to the model's device)."""
        return dict(self.encoder.tokenizer(check_texts(texts), padding=True, truncation="longest_first",
                                           max_length=self.max_seq_length, return_tensors="pt"))

    def encode_features(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Runs the encoder once: token ids -> pooled, L2-normalised embeddings."""
        # all-MiniLM-L6-v2 ends in a Normalize module already; normalising again is a no-op there
        # and makes any other encoder behave the same way.
        return F.normalize(self.encoder(dict(features))["sentence_embedding"], p=2, dim=1)

    def pool(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token vectors -> sentence embeddings through the encoder's own modules after the transformer
        (its Pooling and Normalize), L2-normalised as in :meth:`encode_features`."""
        features = {"token_embeddings": token_embeddings, "attention_mask": attention_mask}
        for module in list(self.encoder)[1:]:
            features = module(features)
        return F.normalize(features["sentence_embedding"], p=2, dim=1)

    def encode_from_layer(self, states: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Runs transformer layers ``layer..end`` on stored token vectors, then :meth:`pool`: the embedding
        the whole encoder gives, for the cost of the top layers. Runs in the caller's autocast context
        and grad mode.

        Args:
            states: ``(batch, tokens, dim)`` token vectors after ``layer`` layers (:func:`pad_token_vectors`).
            mask: ``(batch, tokens)``, 1 for real tokens.
            layer: 0 is the embedding layer's output, ``n`` the output of the ``n``-th layer.
        """
        # Additive attention mask, (batch, 1, 1, tokens): 0 where attended, a huge negative on padding.
        additive = (1 - mask[:, None, None, :].to(states.dtype)) * torch.finfo(states.dtype).min
        for block in self.transformer.encoder.layer[layer:]:
            output = block(states, additive)
            states = output[0] if isinstance(output, tuple) else output  # transformers 4.x returns a tuple
        return self.pool(states, mask.long())

    def classify(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head on sentence embeddings (which must be on the model's device)."""
        return {task: head(embeddings) for task, head in self.heads.items()}

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One encoder pass feeds all heads: ``{"embedding": (batch, dim), task: logits, ...}``."""
        embeddings = self.encode_features(features)
        return {"embedding": embeddings, **self.classify(embeddings)}

    # --------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_logits(self, texts: Sequence[str], batch_size: int = 32) -> dict[str, torch.Tensor]:
        """Logits of every head and the embeddings, in input order, float32 on the CPU.

        Texts run in batches sorted by token count (``mtt_core.predictions.run_token_sorted``) in eval
        mode; each submodule's mode is given back afterwards. Texts cut at the token limit are reported.
        """
        texts = check_texts(texts)

        def run_batch(features: dict) -> dict:
            features = {name: values.to(self.device) for name, values in features.items()}
            return {key: value.float().cpu().numpy() for key, value in self(features).items()}

        with eval_mode(self):
            outputs = run_token_sorted(texts, self.encoder.tokenizer, self.max_seq_length, batch_size, run_batch,
                                       self.tokenize)
        return {key: torch.from_numpy(value) for key, value in outputs.items()}

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Embeddings from the model's own encoder pass: ``(len(texts), dim)`` on the CPU, in input order."""
        return self.predict_logits(texts, batch_size)["embedding"]

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> pd.DataFrame:
        """``sentence``, ``text_class`` (topic), ``sentiment`` and one ``prob_<task>_<label>`` column per class."""
        texts = check_texts(texts)
        return predictions_table(texts, self.predict_logits(texts, batch_size), self.config.tasks)

    # ------------------------------------------------------------ save / load
    def save(self, directory: str | os.PathLike, include_encoder: bool = True, overwrite: bool = False,
             training_args: Any = None, training_data: Mapping[str, Any] | None = None) -> None:
        """Writes the model as a new folder: ``config.json``, ``heads.safetensors`` (with each task's labels
        in its metadata), ``encoder/`` (optional), ``training_args.json`` (optional) and ``manifest.json``
        (every file's sha256). The folder is written beside its place and renamed in.

        Args:
            directory: The folder to write. With ``overwrite``, an earlier saved model there is replaced,
                provided it holds nothing its manifest does not list; anything else is refused.
            include_encoder: Save the encoder weights too: needed whenever the encoder was fine-tuned.
                With a frozen encoder ``False`` saves ~90 MB and ``load`` rebuilds it from ``config.encoder``
                (refusing an encoder with other weights).
            overwrite: Replace an earlier saved model at ``directory``.
            training_args: The ``TrainConfig`` it was trained with (``mtt_helpers.read_training_args`` reads it back).
            training_data: JSON-ready facts about the data used (dataset names, row counts, seed).

        Raises:
            FileExistsError: ``directory`` exists (without ``overwrite``), or may not be replaced.
            ValueError: ``directory`` is a symbolic link, or the training record is not JSON-ready.
            mtt_core.files.WriteError: the file system refused (a full disk, no permission).
        """
        directory = Path(directory).expanduser()
        record = _training_record(training_args, training_data)  # refused before anything is written
        check_replaceable(directory, MODEL_KIND)  # a folder that is not an earlier saved model: never
        if not overwrite and directory.exists() and any(directory.iterdir()):
            raise FileExistsError(f"{str(directory)!r} exists; pass overwrite=True to replace an earlier saved model.")

        def write(folder: Path) -> None:
            self.config.to_json(folder / CONFIG_FILE, encoder_saved=include_encoder,
                                encoder_sha256=weights_fingerprint(self.encoder.state_dict()))
            heads = {k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}
            save_file(heads, folder / HEADS_FILE, metadata=labels_metadata(self.config))
            if include_encoder:
                self.encoder.save(str(folder / ENCODER_DIR), safe_serialization=True)
            if record is not None:
                (folder / TRAINING_ARGS_FILE).write_text(record, encoding="utf-8")

        write_atomically(directory, write, is_dir=True, kind=MODEL_KIND, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> MultiTaskSentenceTransformer:
        """Loads a model written by :meth:`save`; never unpickles anything.

        Every file is checked against the digest ``save`` recorded, the head labels against
        ``config.json``, and every weight for NaN or infinity, before the model is built.

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: a file differs from the one ``save`` wrote, ``config.json`` or the weights are
                unreadable, do not fit, or hold NaN or infinite values, or the encoder's weights differ
                from those the heads were saved with.
        """
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"Model directory not found: {str(directory)!r}")
        heads_path, config_path = directory / HEADS_FILE, directory / CONFIG_FILE
        for path in (config_path, heads_path):
            if not path.is_file():
                raise FileNotFoundError(f"Missing model file: {str(path)!r}")
        verify_files(directory)  # every file save() wrote, the encoder's tokenizer included
        config, metadata = read_config(config_path)
        try:
            with safe_open(heads_path, framework="pt") as weights:
                saved_metadata = weights.metadata()
            heads = load_file(heads_path)
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(f"Head weights {str(heads_path)!r} are unreadable: {error}") from error
        check_saved_labels(saved_metadata, config, heads_path, config_path)  # before the slow encoder load
        _refuse_non_finite(heads, heads_path)
        encoder = _saved_encoder(directory, config, metadata, device)
        try:
            model = cls(encoder, config)
        except ValueError as error:  # a value only the encoder can check, e.g. max_seq_length above its limit
            raise ValueError(f"Unusable model config {str(config_path)!r}: {error}") from error
        try:
            model.heads.load_state_dict(heads, strict=True)
        except RuntimeError as error:
            raise ValueError(f"Head weights {str(heads_path)!r} do not fit the config: {error}") from error
        return model


def pad_token_vectors(hidden: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored token vectors of several texts (one ``(tokens, dim)`` tensor each) as one padded batch:
    ``(states, mask)``, for :meth:`MultiTaskSentenceTransformer.encode_from_layer`."""
    lengths = torch.tensor([h.shape[0] for h in hidden])
    states = torch.nn.utils.rnn.pad_sequence(list(hidden), batch_first=True)
    return states, (torch.arange(states.shape[1])[None, :] < lengths[:, None]).long()


def _refuse_non_finite(state: Mapping[str, torch.Tensor], source: Path) -> None:
    # NumPy's isfinite: about ten times faster than torch's on the 22 M encoder weights (a load takes it every time).
    broken = [name for name, tensor in state.items()
              if tensor.is_floating_point() and not np.isfinite(tensor.detach().float().cpu().numpy()).all()]
    if broken:
        raise ValueError(f"{str(source)!r}: weight(s) {broken[:5]} hold NaN or infinite values; every prediction "
                         "would be meaningless. Train or save the model again.")


def _saved_encoder(directory: Path, config: MultiTaskConfig, metadata: dict, device: str | None) -> SentenceTransformer:
    """The encoder of a saved model: its own ``encoder/``, or ``config.encoder`` when it was not saved;
    refused when its weights are not finite or differ from the fingerprint in ``config.json``."""
    if metadata.get("encoder_saved", False):
        source = directory / ENCODER_DIR
        if not source.is_dir():
            raise FileNotFoundError(f"Missing encoder directory: {str(source)!r}")
        encoder = load_encoder(source, device=device)
    else:
        source = config.encoder or "all-MiniLM-L6-v2"
        encoder = load_encoder(config.encoder, device=device)
    _refuse_non_finite(encoder.state_dict(), directory / ENCODER_DIR)
    if metadata.get("encoder_sha256") != weights_fingerprint(encoder.state_dict()):
        raise ValueError(f"{str(directory)!r}: the encoder loaded ({source}) has other weights than the one the heads "
                         "were saved with; a fine-tuned encoder must be saved with save(..., include_encoder=True).")
    return encoder


def _training_record(training_args: Any, training_data: Mapping[str, Any] | None) -> str | None:
    """``training_args.json``'s text, ``{"train_config": {...}, "data": {...}}``; ``None`` when there is nothing to save.

    Raises:
        ValueError: ``training_args`` is not a dataclass instance, or either part is not JSON-ready.
    """
    if training_args is None and training_data is None:
        return None
    if training_args is not None and (not dataclasses.is_dataclass(training_args) or isinstance(training_args, type)):
        raise ValueError(f"training_args must be a TrainConfig (a dataclass instance), got {type(training_args).__name__}.")
    record = {"train_config": dataclasses.asdict(training_args) if training_args is not None else None,
              "data": dict(training_data or {})}
    try:
        return json.dumps(record, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(f"training_args/training_data cannot be saved as JSON: {error}") from error
