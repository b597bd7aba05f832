"""A small HTTP service for the multi-task model (FastAPI + uvicorn) that batches concurrent requests.

    mtt serve MODEL_DIR [--backend torch|onnx] [--precision fp32|int8|int8-safe]
                        [--host 127.0.0.1] [--port 8000] [--max-texts 256]
                        [--max-body-bytes 1000000] [--on-long-text truncate|refuse]
                        [--max-batch-texts 64] [--max-wait-ms 5] [--max-queue-texts 2048]
                        [--request-timeout-s 30] [--read-timeout-s 10] [--max-connections 4096]

Endpoints:

- ``POST /predict`` with ``{"texts": ["...", ...]}`` returns::

      {"predictions": [{"text": "...", "topic": "sports", "sentiment": "positive",
                        "probabilities": {"topic": {"sports": 0.91, ...}, "sentiment": {...}}}, ...],
       "truncated": [indices of texts cut at the encoder's token limit]}

  One entry per task of the model (``topic`` and ``sentiment`` for the tutorial's model), in input order.
- ``GET /health``: 200 ``{"status": "ok"}`` once the model is loaded, 503 before. It waits for
  nothing (neither the model nor a thread), so it answers at once also under load.
- ``GET /openapi.json``: the API's schema. ``GET /docs`` is Swagger UI, whose page loads its
  scripts and styles from a CDN: it needs the internet and shows a blank page without it;
  ``/openapi.json`` does not.

Batching (:class:`DynamicBatcher`): the texts of concurrent requests join one queue; one worker runs the model on up to
``--max-batch-texts`` texts at a time, after waiting at most ``--max-wait-ms`` for a batch to fill,
in a worker thread (one model call at a time), and hands each request its own rows. A large request
is split into several batches, which take turns with other requests' (see
the batcher below). Each text's labels are those of ``model.predict`` on the
request's texts alone; its probabilities can differ from those in about the 7th decimal (at most
1e-5), because a batch pads every text to its longest one and the matrix products of a different
batch shape round differently. They are not bit-identical.

Slow and abusive clients (:func:`run_server`, the one place these limits are set): a client that has
not sent its whole request (headers and body) within ``--read-timeout-s`` is disconnected, and at most
``--max-connections`` connections are open at once; more are closed as soon as they are accepted.

Errors are JSON ``{"detail": ...}`` and never 500 for bad input:

- 422: malformed JSON (a body that is not UTF-8 included), a body that is not ``{"texts": [...]}``, an empty list, a non-string
  or whitespace-only text, a text with a lone UTF-16 surrogate (FastAPI's validation error list
  names the field and index), or, with ``--on-long-text refuse``, a text longer than the
  encoder's token limit.
- 413: more than ``--max-texts`` texts, or a body over ``--max-body-bytes``.
- 503: ``/predict`` before the model has loaded, or the queue already holds ``--max-queue-texts``
  texts (with a ``Retry-After`` header).
- 504: no answer within ``--request-timeout-s``; the request's texts not yet run are dropped.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import resource
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from mtt_core.predictions import is_text, prediction_records, untruncated_lengths

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- settings
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

    read_timeout_s: float = 10.0
    """Seconds a client has to send a whole request, headers and body, from connecting (or from the end
    of its previous answer); a client still sending then is disconnected, so stalled clients cannot
    hold connections. uvicorn's own keep-alive timeout (5 s) closes idle connections sooner."""

    max_connections: int = 4096
    """Most connections open at once: a connection accepted beyond it is closed at once, so open files
    stay below the process's limit and every connection within it is served (uvicorn's ``limit_concurrency``,
    which answers 503, is set just above it as a second guard)."""

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_batch_texts", "retry_after_s", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_body_bytes < 16:
            raise ValueError(f"max_body_bytes must be >= 16, got {self.max_body_bytes}.")
        if self.on_long_text not in ("truncate", "refuse"):
            raise ValueError(f"on_long_text must be 'truncate' or 'refuse', got {self.on_long_text!r}.")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}.")
        for name in ("request_timeout_s", "read_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.max_queue_texts < self.max_texts:
            raise ValueError(f"max_queue_texts ({self.max_queue_texts}) must be >= max_texts ({self.max_texts}), "
                             "or a request of max_texts texts could never be queued.")


# ----------------------------------------------------------------------------- request and answer
def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class PredictRequest(BaseModel):
    """Body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] = Field(min_length=1, description="Sentences to classify (non-empty strings).")

    @field_validator("texts")
    @classmethod
    def _no_blank_texts(cls, texts: list[str]) -> list[str]:
        blank = [i for i, text in enumerate(texts) if not is_text(text)]
        if blank:
            raise ValueError(f"texts at indices {blank[:20]} are empty or whitespace only")
        # JSON may carry lone surrogates ("\\ud800"), which no tokenizer or UTF-8 answer can hold.
        unencodable = [i for i, text in enumerate(texts) if not _is_utf8_encodable(text)]
        if unencodable:
            raise ValueError(f"texts at indices {unencodable[:20]} hold lone UTF-16 surrogates (not valid Unicode text)")
        return texts


class Prediction(BaseModel):
    """One text's labels and class probabilities, keyed by task name."""

    model_config = ConfigDict(extra="allow")

    text: str
    probabilities: dict[str, dict[str, float]]


class PredictResponse(BaseModel):
    """Body of a 200 answer to ``POST /predict``."""

    predictions: list[Prediction]
    truncated: list[int] = Field(description="Indices of texts cut at the encoder's token limit.")


# ----------------------------------------------------------------------------- body size limit
class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, and 422 for a body that is not UTF-8, checked
    before anything parses it.

    A ``Content-Length`` over the limit is refused at once; a chunked body is read up to the
    limit and then refused, so an unbounded stream never reaches memory whole. JSON exchanged over
    HTTP is UTF-8 (RFC 8259); without this check FastAPI answers 400 to invalid UTF-8 and decodes a
    UTF-16 body as JSON.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse(
            {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"}, status_code=413
        )
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            if not length.isdigit():
                too_large = JSONResponse({"detail": "invalid Content-Length header"}, status_code=400)
            await too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            detail = [{"loc": ["body", error.start], "type": "json_invalid",
                       "msg": f"the body is not UTF-8 text: byte {error.start} ({body[error.start]:#04x}): {error.reason}"}]
            await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to disconnect

        await self.app(scope, replay, send)


# ----------------------------------------------------------------------------- dynamic batching
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


# ----------------------------------------------------------------------------- the model behind the service
class TextsTooLong(ValueError):
    """With ``on_long_text="refuse"``: texts over the encoder's token limit."""


def token_limit(model: Any) -> tuple[Any, int]:
    """The tokenizer and token limit that ``model.predict`` truncates with (torch or ONNX)."""
    tokenizer = model.encoder.tokenizer if hasattr(model, "encoder") else model.tokenizer  # torch, or ONNX
    return tokenizer, int(model.max_seq_length)


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


# ----------------------------------------------------------------------------- the application
def create_app(model: Any | Callable[[], Any], settings: ServiceSettings | None = None) -> FastAPI:
    """Builds the service around a model.

    Args:
        model: A loaded model (``MultiTaskSentenceTransformer``, ``OnnxPredictor`` or
            ``CascadePredictor``), or a function returning one. A function is called in a
            background thread when the server starts; ``/health`` answers 503 until it returns.
        settings: Limits and batching; defaults to :class:`ServiceSettings`.

    Returns:
        The FastAPI application (:func:`run_server` runs it). ``app.state.classifier`` is the
        :class:`BatchedClassifier` once the model has loaded.
    """
    settings = settings or ServiceSettings()

    def install(loaded: Any) -> None:
        app.state.classifier = BatchedClassifier(loaded, settings)

    def load_in_background() -> None:
        try:
            install(model())
        except Exception as error:  # reported by /health; run_server stops: a model that cannot load is an error
            app.state.load_error = f"{type(error).__name__}: {error}"
            if app.state.server is not None:
                app.state.server.should_exit = True

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if loader is not None:
            threading.Thread(target=load_in_background, name="model-loader", daemon=True).start()
        yield
        if app.state.classifier is not None:
            app.state.classifier.close()

    app = FastAPI(
        title="Multi-task sentence classifier",
        description="Topic and sentiment of short English texts (all-MiniLM-L6-v2 + two heads).",
        lifespan=lifespan,
    )
    app.state.classifier, app.state.load_error, app.state.server = None, None, None
    loader = model if callable(model) and not hasattr(model, "predict") else None
    if loader is None:
        install(model)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes each bad input back: up to a megabyte per error, and a
        # 500 when the input holds a lone surrogate that UTF-8 cannot encode. Location, message
        # and type name the problem without it.
        detail = [{key: item[key] for key in ("loc", "msg", "type") if key in item} for item in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 once the model is loaded; 503 while it loads (or if loading failed)."""
        if app.state.classifier is None:
            detail = f"model failed to load: {app.state.load_error}" if app.state.load_error else "model is loading"
            return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={413: {"description": "too many texts or body too large"},
                   503: {"description": "model loading, or queue full (see Retry-After)"},
                   504: {"description": "no answer within the request timeout"}},
    )
    async def predict(request: PredictRequest) -> dict:
        """Topic and sentiment (labels and probabilities) for each text, in input order."""
        classifier = app.state.classifier
        if classifier is None:
            raise HTTPException(503, "model is loading; retry when GET /health answers 200")
        texts = request.texts
        if len(texts) > settings.max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
        try:
            return await asyncio.wait_for(classifier.classify(texts), settings.request_timeout_s)
        except TextsTooLong as error:
            raise HTTPException(422, str(error)) from None
        except QueueFull as error:
            raise HTTPException(503, f"the service is busy: {error}; retry after {settings.retry_after_s} s",
                                headers={"Retry-After": str(settings.retry_after_s)}) from None
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within the request timeout of {settings.request_timeout_s:g} s "
                                     "(the service is busy); the texts not yet classified were dropped, "
                                     "retry later or with fewer texts") from None

    return app


# ----------------------------------------------------------------------------- running it
class PortInUse(OSError):
    """The address to listen on is taken: one line, before any model is loaded."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``(host, port)``, bound before anything else starts.

    Raises:
        PortInUse: the address is taken or cannot be bound (the message says which and why).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    sock.listen(2048)
    return sock


FILES_BESIDES_CONNECTIONS = 256
"""Open files a server needs besides its connections: the model, the libraries, the log."""

DEFAULT_MAX_CONNECTIONS = 4096
"""``--max-connections`` when none is given and the process may open enough files for it."""


def default_max_connections() -> int:
    """:data:`DEFAULT_MAX_CONNECTIONS`, or fewer where this process may open fewer files (its hard limit
    less :data:`FILES_BESIDES_CONNECTIONS`), so ``mtt serve`` starts with its defaults on any machine."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, hard - FILES_BESIDES_CONNECTIONS))


def raise_open_file_limit(needed: int) -> None:
    """Raises this process's soft limit of open files to at least ``needed`` (never above the hard limit).

    Raises:
        ValueError: the hard limit is below ``needed``: lower ``--max-connections``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ValueError(f"--max-connections needs about {needed} open files, but this process may open only {hard}; "
                         "lower --max-connections.")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _protocol_with_limits(settings: ServiceSettings) -> type:
    """uvicorn's h11 protocol, with the two limits uvicorn lacks: a deadline for each whole request
    (:attr:`ServiceSettings.read_timeout_s`), and connections beyond ``max_connections`` closed at once."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._read_deadline = None
            if len(self.connections) > settings.max_connections:
                transport.close()  # over the cap: refused; /health keeps answering the connections within it
                return
            self._arm_read_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_read_deadline()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
            super().connection_lost(exc)

        def _arm_read_deadline(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
            self._read_deadline = self.loop.call_later(settings.read_timeout_s, self._read_deadline_passed)

        def _read_deadline_passed(self) -> None:
            if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
                self.transport.close()  # still sending its request (or nothing) after read_timeout_s

    return LimitedH11Protocol


def run_server(app: FastAPI, settings: ServiceSettings, sock: socket.socket) -> None:
    """Serves ``app`` with uvicorn on the bound ``sock`` until Ctrl-C, with the settings' connection limits.

    Raises:
        RuntimeError: the model failed to load in the background (``app.state.load_error`` says why).
    """
    import uvicorn

    raise_open_file_limit(settings.max_connections + FILES_BESIDES_CONNECTIONS)
    # uvicorn answers 503 once open connections reach limit_concurrency, the connection asking included:
    # one above the cap, so that each of max_connections connections is served.
    config = uvicorn.Config(app, http=_protocol_with_limits(settings), limit_concurrency=settings.max_connections + 1,
                            h11_max_incomplete_event_size=16 * 1024, log_level="warning")
    app.state.server = uvicorn.Server(config)
    app.state.server.run(sockets=[sock])
    if app.state.load_error:
        raise RuntimeError(app.state.load_error)
