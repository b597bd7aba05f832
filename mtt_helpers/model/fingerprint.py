"""One fingerprint of a set of weights: what a saved model's ``config.json`` and the embedding cache's keys hold.

* ``config.json``'s ``encoder_sha256``: the fingerprint of the whole encoder, which
  ``MultiTaskSentenceTransformer.load`` checks, so heads trained on a fine-tuned encoder are never
  loaded onto an encoder with other weights.
* The embedding cache (``mtt_helpers.training.cache.weights_key``): the fingerprint of the encoder,
  or of its layers below a given one, so a cache never serves outputs of another encoder state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch


def weights_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of every tensor of ``state``, in name order: each one's name, dtype, shape and bytes.

    Args:
        state: A ``state_dict()``, or part of one.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
