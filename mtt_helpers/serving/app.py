"""A small HTTP service for the multi-task model (FastAPI + uvicorn).

    mtt serve MODEL_DIR [--backend torch|onnx] [--precision fp32|int8|int8-safe]
                        [--host 127.0.0.1] [--port 8000] [--max-texts 256]
                        [--max-body-bytes 1000000] [--on-long-text truncate|refuse]

Endpoints (interactive documentation at ``/docs``):

- ``POST /predict`` with ``{"texts": ["...", ...]}`` returns::

      {"predictions": [{"text": "...", "topic": "sports", "sentiment": "positive",
                        "probabilities": {"topic": {"sports": 0.91, ...}, "sentiment": {...}}}, ...],
       "truncated": [indices of texts cut at the encoder's token limit]}

  One entry per task of the model (``topic`` and ``sentiment`` for the tutorial's model),
  in input order. Labels and probabilities are those of ``model.predict`` (the
  ``mtt predict`` table), computed in batches sorted by token count.
- ``GET /health``: 200 ``{"status": "ok"}`` once the model is loaded, 503 before.

Errors are JSON ``{"detail": ...}`` and never 500 for bad input:

- 422: malformed JSON, a body that is not ``{"texts": [...]}``, an empty list, a non-string
  or whitespace-only text (FastAPI's validation error list names the field and index), or,
  with ``--on-long-text refuse``, a text longer than the encoder's token limit.
- 413: more than ``--max-texts`` texts, or a body over ``--max-body-bytes``.
- 503: ``/predict`` before the model has loaded.

The model runs one request at a time (a lock; torch and onnxruntime already use every core
for one batch); FastAPI runs the blocking endpoint in its thread pool, so the server keeps
accepting connections meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mtt_helpers.predictions import prediction_records, untruncated_lengths
from mtt_helpers.serving.body_limit import BodySizeLimit
from mtt_helpers.serving.schema import PredictRequest, PredictResponse
from mtt_helpers.serving.settings import ServiceSettings


def _token_limit(model: Any) -> tuple[Any, int]:
    """The tokenizer and token limit that ``model.predict`` truncates with (torch or ONNX)."""
    if hasattr(model, "encoder"):  # MultiTaskSentenceTransformer
        return model.encoder.tokenizer, int(model.encoder.max_seq_length)
    return model.tokenizer, int(model.max_seq_length)


def create_app(model: Any | Callable[[], Any], settings: ServiceSettings | None = None) -> FastAPI:
    """Builds the service around a model.

    Args:
        model: A loaded model (``MultiTaskSentenceTransformer``, ``OnnxPredictor`` or
            ``CascadePredictor``), or a function returning one. A function is called in a
            background thread when the server starts; ``/health`` answers 503 until it returns.
        settings: Limits; defaults to :class:`ServiceSettings`.

    Returns:
        The FastAPI application (run it with uvicorn).
    """
    settings = settings or ServiceSettings()
    state: dict[str, Any] = {"model": None, "error": None}
    lock = threading.Lock()

    def install(loaded: Any) -> None:
        state["tokenizer"], state["max_tokens"] = _token_limit(loaded)
        state["model"] = loaded

    def load_in_background() -> None:
        try:
            install(model())
        except Exception as error:  # reported by /health; the process keeps serving 503
            state["error"] = f"{type(error).__name__}: {error}"

    loader = model if callable(model) and not hasattr(model, "predict") else None
    if loader is None:
        install(model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if loader is not None:
            threading.Thread(target=load_in_background, name="model-loader", daemon=True).start()
        yield

    app = FastAPI(
        title="Multi-task sentence classifier",
        description="Topic and sentiment of short English texts (all-MiniLM-L6-v2 + two heads).",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes each bad input back: up to a megabyte per error, and a
        # 500 when the input holds a lone surrogate that UTF-8 cannot encode. Location, message
        # and type name the problem without it.
        detail = [{key: item[key] for key in ("loc", "msg", "type") if key in item} for item in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get("/health")
    def health() -> JSONResponse:
        """200 once the model is loaded; 503 while it loads (or if loading failed)."""
        if state["model"] is None:
            detail = f"model failed to load: {state['error']}" if state["error"] else "model is loading"
            return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={413: {"description": "too many texts or body too large"}, 503: {"description": "model loading"}},
    )
    def predict(request: PredictRequest) -> dict:
        """Topic and sentiment (labels and probabilities) for each text, in input order."""
        loaded = state["model"]
        if loaded is None:
            raise HTTPException(503, "model is loading; retry when GET /health answers 200")
        texts = request.texts
        if len(texts) > settings.max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
        # One request at a time through the tokenizer and the model: a fast tokenizer raises
        # "Already borrowed" when two threads use it, and one forward pass already uses every core.
        with lock:
            lengths = untruncated_lengths(state["tokenizer"], texts)
            too_long = [i for i, n in enumerate(lengths) if n > state["max_tokens"]]
            if too_long and settings.on_long_text == "refuse":
                details = ", ".join(f"{i} ({lengths[i]} tokens)" for i in too_long[:20])
                raise HTTPException(
                    422, f"texts longer than the model's limit of {state['max_tokens']} tokens: indices {details}"
                )
            table = loaded.predict(texts, batch_size=settings.batch_size)
        return {"predictions": prediction_records(table, loaded.config.tasks), "truncated": too_long}

    return app
