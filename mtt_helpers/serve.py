"""A small HTTP service for the multi-task model (FastAPI + uvicorn).

    python -m mtt_helpers.serve MODEL_DIR [--backend torch|onnx] [--precision fp32|int8|int8-safe]
                                [--host 127.0.0.1] [--port 8000] [--max-texts 256]
                                [--max-body-bytes 1000000] [--on-long-text truncate|refuse]

Endpoints (interactive documentation at ``/docs``):

- ``POST /predict`` with ``{"texts": ["...", ...]}`` returns::

      {"predictions": [{"text": "...", "topic": "sports", "sentiment": "positive",
                        "probabilities": {"topic": {"sports": 0.91, ...}, "sentiment": {...}}}, ...],
       "truncated": [indices of texts cut at the encoder's token limit]}

  One entry per task of the model (``topic`` and ``sentiment`` for the tutorial's model),
  in input order. Labels and probabilities are those of ``model.predict`` (the
  ``python -m mtt_helpers.predict`` table), computed in batches sorted by token count.
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

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from mtt_helpers.model import PREDICTION_COLUMN


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
        blank = [i for i, text in enumerate(texts) if not text.strip()]
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


class _BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, checked before anything parses it.

    A ``Content-Length`` over the limit is refused at once; a chunked body is read up to the
    limit and then refused, so an unbounded stream never reaches memory whole.
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
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to disconnect

        await self.app(scope, replay, send)


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

    from contextlib import asynccontextmanager

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
    app.add_middleware(_BodySizeLimit, max_bytes=settings.max_body_bytes)

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
            encoded = state["tokenizer"](texts, add_special_tokens=True, verbose=False)["input_ids"]
            lengths = [len(ids) for ids in encoded]
            too_long = [i for i, n in enumerate(lengths) if n > state["max_tokens"]]
            if too_long and settings.on_long_text == "refuse":
                details = ", ".join(f"{i} ({lengths[i]} tokens)" for i in too_long[:20])
                raise HTTPException(
                    422, f"texts longer than the model's limit of {state['max_tokens']} tokens: indices {details}"
                )
            table = loaded.predict(texts, batch_size=settings.batch_size)
        return {"predictions": prediction_records(table, loaded.config.tasks), "truncated": too_long}

    return app


def prediction_records(table: Any, tasks: dict[str, list[str]]) -> list[dict]:
    """``model.predict``'s table -> one JSON-ready dict per text (``text``, one label per task, probabilities)."""
    records = []
    for row in table.to_dict(orient="records"):
        record: dict[str, Any] = {"text": row["sentence"]}
        for task in tasks:
            record[task] = row[PREDICTION_COLUMN.get(task, task)]
        record["probabilities"] = {
            task: {label: float(row[f"prob_{task}_{label}"]) for label in labels} for task, labels in tasks.items()
        }
        records.append(record)
    return records


# ----------------------------------------------------------------- benchmark
def benchmark_service(
    url: str, texts: Sequence[str], batch_size: int, requests: int, concurrency: int = 1, timeout: float = 60.0
) -> dict[str, float]:
    """Measures a running service: requests per second and latency percentiles.

    Args:
        url: The service's base URL, e.g. ``"http://127.0.0.1:8000"``.
        texts: Texts to send, cycled through; each request takes the next ``batch_size``.
        batch_size: Texts per request.
        requests: Requests to send in total (after one untimed warm-up request).
        concurrency: Requests in flight at once.
        timeout: Seconds to wait for one answer.

    Returns:
        ``requests_per_s``, ``texts_per_s``, ``p50_ms`` and ``p95_ms`` (latency of one request).

    Raises:
        RuntimeError: a request did not answer 200.
    """
    if not texts or batch_size < 1 or requests < 1 or concurrency < 1:
        raise ValueError("benchmark_service needs texts, and batch_size, requests and concurrency >= 1.")
    endpoint = url.rstrip("/") + "/predict"
    bodies = [
        json.dumps({"texts": [texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)]}).encode()
        for i in range(requests)
    ]

    def send(body: bytes) -> float:
        start = time.perf_counter()
        request = urllib.request.Request(endpoint, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{endpoint} answered {error.code}: {error.read()[:200]!r}") from error
        return time.perf_counter() - start

    send(bodies[0])  # warm-up: first-call allocations are not the service's steady state
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(send, bodies))
    elapsed = time.perf_counter() - start
    percentiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "requests_per_s": requests / elapsed,
        "texts_per_s": requests * batch_size / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentiles[94],
    }


# ------------------------------------------------------ a server for a notebook
def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(
    model_dir: str | os.PathLike, *options: str, host: str = "127.0.0.1", port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Runs ``python -m mtt_helpers.serve MODEL_DIR *options`` in a child process while the block runs.

    Example::

        with running_service("onnx_model", "--backend", "onnx", "--precision", "int8-safe") as url:
            benchmark_service(url, texts, batch_size=32, requests=20)

    Args:
        model_dir: Passed to the command.
        *options: More command-line options (``--backend``, ``--precision``, ``--max-texts``...).
        host: Address to listen on.
        port: Port; ``None`` picks a free one.
        timeout: Seconds to wait for ``GET /health`` to answer 200.

    Yields:
        The base URL, e.g. ``"http://127.0.0.1:41234"``, once ``/health`` answers 200.

    Raises:
        RuntimeError: the server exited or did not become healthy in time; the message holds
            the end of its stderr.

    The process is stopped (terminated, killed after 10 s) when the block ends, also on an error.
    """
    port = _free_port(host) if port is None else port
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "mtt_helpers.serve", str(model_dir), "--host", host, "--port", str(port), *options]
    with tempfile.TemporaryFile(mode="w+") as stderr:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True)

        def failure(reason: str) -> RuntimeError:
            stderr.seek(0)
            return RuntimeError(f"{' '.join(command[1:])}: {reason}\n{stderr.read()[-2000:]}")

        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise failure(f"the server exited with code {process.returncode}")
                try:
                    with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass  # not listening yet, or 503 while the model loads
                if time.monotonic() > deadline:
                    raise failure(f"GET /health did not answer 200 within {timeout:.0f} s")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: parses the options, then serves until Ctrl-C."""
    from mtt_helpers.backends import PRECISIONS

    parser = argparse.ArgumentParser(
        prog="python -m mtt_helpers.serve",
        description="Serve a multi-task model over HTTP: POST /predict, GET /health, /docs.",
    )
    parser.add_argument("model_dir", help="a saved model (--backend torch) or an ONNX export directory (--backend onnx)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="default torch")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="with --backend onnx: fp32 (default), int8 or int8-safe (int8 with fp32 re-runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--max-texts", type=int, default=256, help="most texts per request; more gets 413 (default 256)")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000,
                        help="largest request body; larger gets 413 (default 1000000)")
    parser.add_argument("--on-long-text", choices=["truncate", "refuse"], default="truncate",
                        help="texts over the token limit: classify the first 256 tokens and flag them (default), "
                             "or answer 422")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    args = parser.parse_args(argv)

    from pathlib import Path

    from mtt_helpers.cli_common import fail

    if not Path(args.model_dir).is_dir():
        fail(f"model directory not found: {args.model_dir}")
    if not 0 <= args.port <= 65535:
        fail(f"--port must be between 0 and 65535, got {args.port}")
    try:
        settings = ServiceSettings(args.max_texts, args.max_body_bytes, args.on_long_text, args.batch_size)
    except ValueError as error:
        fail(str(error))

    import uvicorn

    from mtt_helpers.backends import load_predictor
    from mtt_helpers.utils import quiet

    quiet()
    failure: list[str] = []

    def load() -> Any:
        # In a background thread once the server listens, so /health answers 503 meanwhile.
        try:
            return load_predictor(args.model_dir, args.backend, args.precision)
        except Exception as error:
            hint = " (pip install 'mtt_helpers[onnx]')" if isinstance(error, ImportError) else ""
            failure.append(f"cannot load the model in {args.model_dir}: {error}{hint}")
            server.should_exit = True  # a model that cannot load is an error, not a server stuck at 503
            raise

    server = uvicorn.Server(uvicorn.Config(create_app(load, settings), host=args.host, port=args.port,
                                           log_level="warning"))
    print(f"serving on http://{args.host}:{server.config.port} (docs at /docs); loading the model...", file=sys.stderr)
    server.run()
    if failure:
        fail(failure[0])

if __name__ == "__main__":
    main()
