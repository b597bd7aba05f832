"""A small HTTP service for the multi-task model (FastAPI + uvicorn) that batches concurrent requests.

    mtt serve MODEL_DIR [--backend torch|onnx] [--precision fp32|int8|int8-safe]
                        [--host 127.0.0.1] [--port 8000] [--max-texts 256]
                        [--max-body-bytes 1000000] [--on-long-text truncate|refuse]
                        [--max-batch-texts 64] [--max-wait-ms 5] [--max-queue-texts 2048]
                        [--request-timeout-s 30]

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

Batching: the texts of concurrent requests join one queue; one worker runs the model on up to
``--max-batch-texts`` texts at a time, after waiting at most ``--max-wait-ms`` for a batch to fill,
in a worker thread (one model call at a time), and hands each request its own rows. A large request
is split into several batches, which take turns with other requests' (see
:mod:`~mtt_helpers.serving.batcher`). Each text's labels are those of ``model.predict`` on the
request's texts alone; its probabilities can differ from those in about the 7th decimal (at most
1e-5), because a batch pads every text to its longest one and the matrix products of a different
batch shape round differently. They are not bit-identical.

Errors are JSON ``{"detail": ...}`` and never 500 for bad input:

- 422: malformed JSON, a body that is not ``{"texts": [...]}``, an empty list, a non-string
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
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mtt_helpers.serving.batcher import QueueFull
from mtt_helpers.serving.body_limit import BodySizeLimit
from mtt_helpers.serving.classifier import BatchedClassifier, TextsTooLong
from mtt_helpers.serving.schema import PredictRequest, PredictResponse
from mtt_helpers.serving.settings import ServiceSettings


def create_app(model: Any | Callable[[], Any], settings: ServiceSettings | None = None) -> FastAPI:
    """Builds the service around a model.

    Args:
        model: A loaded model (``MultiTaskSentenceTransformer``, ``OnnxPredictor`` or
            ``CascadePredictor``), or a function returning one. A function is called in a
            background thread when the server starts; ``/health`` answers 503 until it returns.
        settings: Limits and batching; defaults to :class:`ServiceSettings`.

    Returns:
        The FastAPI application (run it with uvicorn). ``app.state.classifier`` is the
        :class:`~mtt_helpers.serving.classifier.BatchedClassifier` once the model has loaded.
    """
    settings = settings or ServiceSettings()
    state: dict[str, Any] = {"error": None}

    def install(loaded: Any) -> None:
        app.state.classifier = BatchedClassifier(loaded, settings)

    def load_in_background() -> None:
        try:
            install(model())
        except Exception as error:  # reported by /health; the process keeps serving 503
            state["error"] = f"{type(error).__name__}: {error}"

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
    app.state.classifier = None
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
            detail = f"model failed to load: {state['error']}" if state["error"] else "model is loading"
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
