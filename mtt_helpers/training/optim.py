"""The optimizer and schedule of a run: AdamW with a learning rate per part, linear warmup then decay, clipping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import get_linear_schedule_with_warmup

from mtt_helpers.model import MultiTaskSentenceTransformer
from mtt_helpers.training.config import TrainConfig


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, parameters: list,
                   max_grad_norm: float | None) -> None:
    """One update: clear the old gradients, backpropagate ``loss``, clip the gradient norm of
    ``parameters`` to ``max_grad_norm`` (``None``: no clipping), step, then advance the schedule."""
    optimizer.zero_grad()
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    scheduler.step()


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_ratio: float, total_steps: int) -> Any:
    """Learning rates rise linearly from 0 over ``warmup_ratio`` of ``total_steps``, then fall linearly to 0."""
    return get_linear_schedule_with_warmup(optimizer, math.floor(warmup_ratio * total_steps), total_steps)


@dataclass
class Optimization:
    """What :func:`~mtt_helpers.training.train` updates the trainable weights with."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    parameters: list[torch.nn.Parameter]
    """Every trainable parameter: their gradient norm is clipped together."""
    encoder_parameters: list[torch.nn.Parameter]
    """The trainable encoder parameters (empty when the encoder is frozen)."""
    max_grad_norm: float | None

    def step(self, loss: torch.Tensor) -> None:
        """One update with ``loss`` (see :func:`optimizer_step`)."""
        optimizer_step(loss, self.optimizer, self.scheduler, self.parameters, self.max_grad_norm)


def make_optimization(model: MultiTaskSentenceTransformer, tasks: list[str], config: TrainConfig,
                      n_rows: int) -> Optimization:
    """AdamW over the heads of ``tasks`` (``head_lr``) and the trainable encoder weights
    (``encoder_lr``), scheduled over ``config.epochs`` epochs of ``n_rows`` rows (call after
    ``set_trainable``)."""
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    trained_params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for task in tasks for p in model.heads[task].parameters()], "lr": config.head_lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": config.encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    scheduler = linear_schedule(optimizer, config.warmup_ratio, config.epochs * config.epoch_steps(n_rows))
    return Optimization(optimizer, scheduler, trained_params, encoder_params, config.max_grad_norm)
