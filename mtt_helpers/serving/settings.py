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

    max_batch_texts: int = 64
    """Most texts in one model call (one forward pass). Texts of concurrent requests share a call;
    a request with more texts is split over several calls, which interleave with other requests'."""

    max_wait_ms: float = 5.0
    """How long the first text of a batch waits for more texts before the model runs a batch that
    is not full. 0 runs whatever is queued at once (with ``max_batch_texts`` equal to one
    request's texts, that is one request per model call: batching off)."""

    max_queue_texts: int = 2048
    """Most texts waiting for the model; a request that would queue more gets 503 with ``Retry-After``."""

    request_timeout_s: float = 30.0
    """Seconds a request may take from arrival to answer; later gets 504, and its texts not yet
    run are dropped from the queue."""

    retry_after_s: int = 1
    """Seconds a client is told to wait (the ``Retry-After`` header) when the queue is full."""

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_batch_texts", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_body_bytes < 16:
            raise ValueError(f"max_body_bytes must be >= 16, got {self.max_body_bytes}.")
        if self.on_long_text not in ("truncate", "refuse"):
            raise ValueError(f"on_long_text must be 'truncate' or 'refuse', got {self.on_long_text!r}.")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}.")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}.")
        if self.max_queue_texts < self.max_texts:
            raise ValueError(f"max_queue_texts ({self.max_queue_texts}) must be >= max_texts ({self.max_texts}), "
                             "or a request of max_texts texts could never be queued.")
