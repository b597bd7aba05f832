"""The model behind the service: each request's texts are counted in tokens, then classified in
dynamic batches shared with concurrent requests (:mod:`~mtt_helpers.serving.batcher`).

Token counting runs in its own thread with a private copy of the tokenizer: a fast tokenizer that
one thread uses while another changes its truncation settings raises "Already borrowed", and the
model thread uses the model's own tokenizer.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mtt_helpers.predictions import prediction_records, untruncated_lengths
from mtt_helpers.serving.batcher import DynamicBatcher
from mtt_helpers.serving.settings import ServiceSettings


class TextsTooLong(ValueError):
    """With ``on_long_text="refuse"``: texts over the encoder's token limit."""


def token_limit(model: Any) -> tuple[Any, int]:
    """The tokenizer and token limit that ``model.predict`` truncates with (torch or ONNX)."""
    if hasattr(model, "encoder"):  # MultiTaskSentenceTransformer
        return model.encoder.tokenizer, int(model.encoder.max_seq_length)
    return model.tokenizer, int(model.max_seq_length)


class BatchedClassifier:
    """Classifies the texts of concurrent requests in shared model calls.

    Args:
        model: A loaded model: ``predict(texts, batch_size)`` returning the predictions table,
            ``config.tasks``, and a tokenizer (see :func:`token_limit`).
        settings: ``on_long_text`` and the batching settings.
    """

    def __init__(self, model: Any, settings: ServiceSettings) -> None:
        self.model = model
        self.settings = settings
        tokenizer, self.max_tokens = token_limit(model)
        self._counting_tokenizer = copy.deepcopy(tokenizer)
        self._counter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-counter")
        self.batcher = DynamicBatcher(self._run_batch, settings.max_batch_texts, settings.max_wait_ms / 1000,
                                      settings.max_queue_texts)

    def _run_batch(self, texts: list[str]) -> list[dict]:
        """One model call (one forward pass) on texts of one or more requests."""
        table = self.model.predict(texts, batch_size=len(texts))
        return prediction_records(table, self.model.config.tasks)

    async def classify(self, texts: Sequence[str]) -> dict[str, list]:
        """The body of a 200 answer: ``predictions`` (one record per text, in input order) and
        ``truncated`` (indices of texts cut at the token limit).

        Raises:
            TextsTooLong: with ``on_long_text="refuse"``, a text over the token limit.
            QueueFull: the queue has no room for the texts.
        """
        lengths = await asyncio.get_running_loop().run_in_executor(
            self._counter, untruncated_lengths, self._counting_tokenizer, texts)
        too_long = [i for i, n in enumerate(lengths) if n > self.max_tokens]
        if too_long and self.settings.on_long_text == "refuse":
            details = ", ".join(f"{i} ({lengths[i]} tokens)" for i in too_long[:20])
            raise TextsTooLong(f"texts longer than the model's limit of {self.max_tokens} tokens: indices {details}")
        # Longest first, like model.predict: a request split over several batches pads less.
        order = sorted(range(len(texts)), key=lambda i: -min(lengths[i], self.max_tokens))
        return {"predictions": await self.batcher.submit(texts, order), "truncated": too_long}

    def close(self) -> None:
        """Stops the batch worker and the token-counting thread."""
        self.batcher.close()
        self._counter.shutdown(wait=False, cancel_futures=True)
