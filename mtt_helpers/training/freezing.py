"""What learns during a run: frozen and trainable parts, their train/eval modes, and the run's token limit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mtt_helpers.model import MultiTaskSentenceTransformer, transformer_of
from mtt_helpers.training.config import ALL_LAYERS


def set_trainable(model: MultiTaskSentenceTransformer, encoder_layers: int | str, tasks: list[str]) -> None:
    """Freezes everything, then unfreezes the top ``encoder_layers`` layers (``"all"``: the
    whole encoder, embeddings included) and the heads of ``tasks``."""
    for parameter in model.parameters():
        parameter.requires_grad = False
    if encoder_layers == ALL_LAYERS:
        trainable = [model.encoder]
    else:
        layers = transformer_of(model).encoder.layer
        if encoder_layers > len(layers):
            raise ValueError(f"The encoder has {len(layers)} layers; cannot unfreeze {encoder_layers}.")
        trainable = list(layers[len(layers) - encoder_layers :])
    trainable += [model.heads[task] for task in tasks]
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad = True


def set_training_modes(model: MultiTaskSentenceTransformer, encoder_layers: int | str) -> None:
    """Training mode for what learns, eval mode (no dropout) for the frozen encoder parts, so a
    frozen layer gives the same output whether it runs at every step or once into a cache."""
    model.train()
    if encoder_layers == ALL_LAYERS:
        return
    bert = transformer_of(model)
    bert.embeddings.eval()
    for layer in bert.encoder.layer[: len(bert.encoder.layer) - encoder_layers]:
        layer.eval()


@contextlib.contextmanager
def truncated_to(model: MultiTaskSentenceTransformer,
                 max_seq_length: int | None) -> Iterator[MultiTaskSentenceTransformer]:
    """Sets the encoder's ``max_seq_length`` for the ``with`` block (``None``: leaves it) and
    restores the encoder's own value afterwards, also after an error."""
    own = model.encoder.max_seq_length
    if max_seq_length is not None:
        model.encoder.max_seq_length = max_seq_length
    try:
        yield model
    finally:
        model.encoder.max_seq_length = own


@contextlib.contextmanager
def frozen_and_eval_afterwards(model: MultiTaskSentenceTransformer) -> Iterator[MultiTaskSentenceTransformer]:
    """Whatever happens in the block, the model ends frozen and in eval mode (as :func:`train` documents)."""
    try:
        yield model
    finally:
        set_trainable(model, 0, [])
        model.eval()
