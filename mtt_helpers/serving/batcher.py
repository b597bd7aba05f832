"""Dynamic batching: the texts of concurrent requests share one model call.

Each request's items (texts) join a bounded queue with a future. One worker, a task on the event
loop, waits until a batch is full (``max_batch_items``) or the oldest queued item has waited
``max_wait_s``, then runs the model once on the batch in a worker thread (so the event loop stays
free to accept requests and answer ``/health``; one model call at a time) and hands each request
its own rows. A request with more items than fit is split: its rest goes to the back of the
queue, so the batches of a large request interleave with other requests' and none holds the model
for long. A request that is cancelled (its timeout) drops its items not yet taken into a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds too many items to take a request's items."""


@dataclass(eq=False)
class _Request:
    items: Sequence[Any]
    pending: deque[int]
    """Indices of items not yet taken into a batch, in the order they run."""
    future: asyncio.Future
    arrived: float
    results: list[Any] = field(default_factory=list)
    missing: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.missing = len(self.items)


class DynamicBatcher:
    """Runs ``run_batch`` on batches gathered from concurrent :meth:`submit` calls.

    Args:
        run_batch: Maps a list of items to one output per item, in the same order. Called in a
            worker thread, one call at a time.
        max_batch_items: Most items per call.
        max_wait_s: How long the oldest queued item waits for a fuller batch; 0 runs at once.
        max_queue_items: Most items waiting; :meth:`submit` raises :class:`QueueFull` beyond it.
    """

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], max_batch_items: int, max_wait_s: float,
                 max_queue_items: int) -> None:
        self.run_batch = run_batch
        self.max_batch_items = max_batch_items
        self.max_wait_s = max_wait_s
        self.max_queue_items = max_queue_items
        self.queued = 0
        """Items waiting for a batch."""
        self._requests: deque[_Request] = deque()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker: asyncio.Task | None = None
        self._arrival: asyncio.Event | None = None

    async def submit(self, items: Sequence[Any], order: Sequence[int] | None = None) -> list[Any]:
        """The outputs of ``items``, in their order, once every item has run.

        Args:
            items: The request's items.
            order: The order in which to queue them (indices into ``items``); default as given.

        Raises:
            QueueFull: the queue has no room for ``items``.
            Exception: whatever ``run_batch`` raised for a batch holding one of ``items``.
        """
        if self.queued + len(items) > self.max_queue_items:
            raise QueueFull(f"{self.queued} texts are waiting for the model; the queue holds {self.max_queue_items}")
        loop = asyncio.get_running_loop()
        self._start_worker(loop)
        request = _Request(items, deque(range(len(items)) if order is None else order), loop.create_future(),
                           loop.time())
        self._requests.append(request)
        self.queued += len(request.pending)
        self._arrival.set()
        try:
            return await request.future
        finally:  # answered, failed or cancelled: nothing of it stays queued
            if request.pending:
                self.queued -= len(request.pending)
                request.pending.clear()
                self._requests.remove(request)

    def close(self) -> None:
        """Stops the worker; a model call in progress finishes in its thread."""
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._arrival = asyncio.Event()
            self._worker = loop.create_task(self._work(), name="batcher")

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queued:
                self._arrival.clear()
                await self._arrival.wait()
            deadline = self._requests[0].arrived + self.max_wait_s
            while self.queued < self.max_batch_items and loop.time() < deadline:
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                await self._run(loop, batch)

    def _take_batch(self) -> list[tuple[_Request, int]]:
        """Up to ``max_batch_items`` items from the front of the queue; a split request's rest
        goes to the back, behind the requests that waited meanwhile."""
        batch: list[tuple[_Request, int]] = []
        while self._requests and len(batch) < self.max_batch_items:
            request = self._requests.popleft()
            for _ in range(min(len(request.pending), self.max_batch_items - len(batch))):
                batch.append((request, request.pending.popleft()))
            if request.pending:
                self._requests.append(request)
        self.queued -= len(batch)
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[_Request, int]]) -> None:
        items = [request.items[index] for request, index in batch]
        try:
            outputs = await loop.run_in_executor(self._executor, self.run_batch, items)
            if len(outputs) != len(items):
                raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(items)} inputs")
        except Exception as error:  # every request with an item in this batch fails
            logger.exception("a batch of %d texts failed", len(items))
            for request, _ in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        logger.debug("ran a batch of %d texts from %d requests", len(items), len({id(r) for r, _ in batch}))
        for (request, index), output in zip(batch, outputs):
            if request.future.done():  # timed out or failed meanwhile
                continue
            request.results[index] = output
            request.missing -= 1
            if not request.missing:
                request.future.set_result(request.results)
