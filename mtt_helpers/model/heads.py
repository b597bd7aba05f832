"""The classification head: Linear(384 -> 192) -> GELU -> Dropout -> Linear(192 -> classes)."""

from __future__ import annotations

import torch
from torch import nn


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
