"""A multi-task Sentence Transformer: one shared encoder, one small MLP head per task.

``MultiTaskSentenceTransformer``: tokenize -> encoder (once) -> every head (``MLPHead``,
``mtt_helpers.model.heads``). ``predict`` gives a table; ``save``/``load`` use safetensors + JSON,
no pickle (``mtt_helpers.model.io``).

The config (``MultiTaskConfig``, the labels and sizes) lives in ``mtt_helpers.config``, the
token-sorted batching and the predictions table in ``mtt_helpers.predictions``: the ONNX predictor
(``mtt_helpers.onnx``) shares both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import nn

from mtt_helpers.config import MultiTaskConfig
from mtt_helpers.model import io
from mtt_helpers.model.encoder import encoder_token_limit, load_encoder
from mtt_helpers.model.heads import MLPHead
from mtt_helpers.predictions import check_texts, predictions_table, run_token_sorted


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Puts ``module`` in eval mode, then restores every submodule's own previous mode.

    Restoring per submodule (not ``module.train(was_training)``) keeps, say, a frozen encoder in
    eval mode while its heads train.
    """
    modes = [(child, child.training) for child in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for child, training in modes:
            child.training = training


class MultiTaskSentenceTransformer(nn.Module):
    """One Sentence Transformer encoder shared by several classification heads.

    Built in eval mode (dropout off); training loops switch modes themselves.

    Args:
        encoder: A loaded Sentence Transformer (``None`` loads ``config.encoder``).
        config: Task labels and head sizes; defaults to topic + sentiment. ``embedding_dim`` is
            taken from the encoder (``self.config`` is a copy with it filled in).

    Raises:
        ValueError: ``config.embedding_dim`` differs from the encoder's embedding size.
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
        self.config = replace(config, embedding_dim=dim)
        if config.max_seq_length is not None:
            self.set_max_seq_length(config.max_seq_length)
        self.heads = nn.ModuleDict(
            {task: MLPHead(dim, config.hidden_dim, len(labels), config.dropout) for task, labels in config.tasks.items()}
        )
        self.to(self.encoder.device)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def task_names(self) -> list[str]:
        return self.config.task_names

    def set_max_seq_length(self, max_seq_length: int) -> None:
        """Cuts inputs at ``max_seq_length`` tokens from now on, and records it in ``config`` (so
        ``save``, ``export_onnx`` and the service keep it).

        Raises:
            ValueError: not an integer from 1 to the encoder's position limit (512 for MiniLM).
        """
        limit = encoder_token_limit(self.encoder)
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 1 or (
                limit is not None and max_seq_length > limit):
            raise ValueError(f"max_seq_length must be an integer from 1 to {limit or 'the encoder limit'} (the "
                             f"encoder's position limit), got {max_seq_length!r}")
        self.encoder.max_seq_length = max_seq_length
        self.config = replace(self.config, max_seq_length=max_seq_length)

    # ------------------------------------------------------------------ forward
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenizes sentences (padded to the longest) and moves the tensors to the model's device."""
        texts = check_texts(texts)
        # sentence-transformers >= 6 renamed tokenize() to preprocess(); Colab may have either.
        tokenize = getattr(self.encoder, "preprocess", None) or self.encoder.tokenize
        # Newer sentence-transformers versions add non-tensor entries; keep them as they are.
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in tokenize(texts).items()}

    def encode_features(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Runs the encoder once: token ids -> pooled, L2-normalised embeddings."""
        # all-MiniLM-L6-v2 ends in a Normalize module already; normalising again is a
        # no-op there and makes any other encoder behave the same way.
        return F.normalize(self.encoder(dict(features))["sentence_embedding"], p=2, dim=1)

    def pool(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token vectors -> sentence embeddings through the encoder's own modules after the
        transformer (its Pooling, whatever its mode, and Normalize), L2-normalised as in
        :meth:`encode_features`.

        Args:
            token_embeddings: ``(batch, sequence, dim)``, e.g. the transformer's last hidden state.
            attention_mask: ``(batch, sequence)``, 1 for real tokens.
        """
        features = {"token_embeddings": token_embeddings, "attention_mask": attention_mask}
        for module in list(self.encoder)[1:]:
            features = module(features)
        return F.normalize(features["sentence_embedding"], p=2, dim=1)

    def classify(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Applies every head to precomputed embeddings (used with a frozen, cached encoder)."""
        return {task: head(embeddings) for task, head in self.heads.items()}

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One encoder pass feeds all heads: ``{"embedding": (batch, dim), task: logits, ...}``.

        Args:
            features: Output of :meth:`tokenize`.
        """
        embeddings = self.encode_features(features)
        return {"embedding": embeddings, **self.classify(embeddings)}

    # --------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_logits(self, texts: Sequence[str], batch_size: int = 32) -> dict[str, torch.Tensor]:
        """Logits of every head and the embeddings, in the input order, on the CPU.

        Texts run in batches sorted by token count (``mtt_helpers.predictions``), in eval mode;
        each submodule's mode is restored afterwards. Texts cut at the token limit are reported.
        """
        texts = check_texts(texts)

        def run_batch(features: dict) -> dict:
            return {key: value.float().cpu().numpy() for key, value in self(features).items()}

        with eval_mode(self):
            outputs = run_token_sorted(
                texts, self.encoder.tokenizer, self.encoder.max_seq_length, batch_size, run_batch, self.tokenize
            )
        return {key: torch.from_numpy(value) for key, value in outputs.items()}

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Embeddings from the model's own encoder pass, token-sorted (unlike ``mtt_helpers.embed``,
        which uses ``SentenceTransformer.encode``); ``(len(texts), dim)`` on the CPU, input order."""
        return self.predict_logits(texts, batch_size)["embedding"]

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> pd.DataFrame:
        """Classifies sentences for every task: see ``mtt_helpers.predictions.predictions_table``."""
        texts = check_texts(texts)
        return predictions_table(texts, self.predict_logits(texts, batch_size), self.config.tasks)

    # ------------------------------------------------------------ save / load
    def save(self, directory: str | os.PathLike, include_encoder: bool = True, training_args: Any = None,
             training_data: Mapping[str, Any] | None = None) -> None:
        """Writes the model folder atomically, with ordinary permissions: see ``mtt_helpers.model.io``
        for its files (``load`` checks the encoder's fingerprint and the labels the heads were saved with).

        Args:
            directory: Created if missing; replaced only when empty or an earlier saved model holding
                nothing its ``manifest.json`` does not list (``mtt_helpers.manifest.check_replaceable``).
            include_encoder: Save the encoder weights too. Needed whenever the encoder was
                fine-tuned; with a frozen encoder ``False`` saves ~90 MB and ``load`` rebuilds it
                from ``config.encoder``.
            training_args: The ``TrainConfig`` it was trained with, saved as ``training_args.json``
                (``mtt_helpers.training.read_training_args`` reads it back).
            training_data: JSON-ready facts about the data used (dataset names, row counts, seed).

        Raises:
            FileExistsError: ``directory`` is a file, or a folder that may not be replaced.
            ValueError: ``directory`` is a symbolic link, or the training record is not JSON-ready.
        """
        io.save_model(self, Path(directory).expanduser(), include_encoder, training_args, training_data)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> "MultiTaskSentenceTransformer":
        """Loads a model written by :meth:`save`. Never unpickles anything.

        Raises:
            FileNotFoundError: the directory or one of its files is missing.
            ValueError: ``config.json``, the encoder or the weights are unreadable or do not fit,
                or the encoder's weights differ from those the heads were saved with.
        """
        return io.load_model(cls, Path(directory).expanduser(), device)
