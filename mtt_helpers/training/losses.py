"""The training losses: masked cross-entropy per task, and how much two tasks' gradients agree."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtt_helpers.data import IGNORE_INDEX


def task_losses(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy per task over the rows labelled for it (``IGNORE_INDEX`` rows add nothing:
    the mean runs over labelled rows only). A task with no labelled row in the batch is left out."""
    return {
        task: F.cross_entropy(logits[task].float(), target.to(logits[task].device), ignore_index=IGNORE_INDEX)
        for task, target in targets.items()
        if (target != IGNORE_INDEX).any()
    }


def gradient_cosine(losses: dict[str, torch.Tensor], parameters: list[torch.nn.Parameter]) -> float:
    """Cosine between the two tasks' gradients on ``parameters``."""
    flat = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters)]))
    return F.cosine_similarity(flat[0], flat[1], dim=0).item()
