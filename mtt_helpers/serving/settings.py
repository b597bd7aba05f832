"""Limits and behaviour of the HTTP service (the ``mtt serve`` options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ServiceSettings:
    """Limits and behaviour of the service (the command line's options)."""

    max_texts: int = 256
    """Most texts in one request; more gets 413."""

    max_body_bytes: int = 1_000_000
    """Largest request body in bytes; larger gets 413 before the body is parsed."""

    on_long_text: Literal["truncate", "refuse"] = "truncate"
    """Texts over the encoder's token limit: ``truncate`` (classify the first tokens, list the
    index in ``truncated``) or ``refuse`` (422 naming the texts)."""

    batch_size: int = 32
    """Texts per forward pass inside one request."""

    def __post_init__(self) -> None:
        if self.max_texts < 1:
            raise ValueError(f"max_texts must be >= 1, got {self.max_texts}.")
        if self.max_body_bytes < 16:
            raise ValueError(f"max_body_bytes must be >= 16, got {self.max_body_bytes}.")
        if self.on_long_text not in ("truncate", "refuse"):
            raise ValueError(f"on_long_text must be 'truncate' or 'refuse', got {self.on_long_text!r}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
