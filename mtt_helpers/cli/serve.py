"""Serve a multi-task model over HTTP: POST /predict, GET /health, /openapi.json and /docs.

    mtt serve MODEL_DIR [--backend torch|onnx] [--precision fp32|int8|int8-safe] [--port 8000]

Concurrent requests share model calls (dynamic batching). The service itself is
``mtt_helpers.serving.app`` (its docstring lists the answers and errors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mtt_helpers.backends import PREDICTOR_PRECISIONS
from mtt_helpers.cli.common import fail, int_at_least

EPILOG = """Concurrent requests share model calls: the texts of every waiting request join one queue, and
the model runs on up to --max-batch-texts of them at a time, waiting at most --max-wait-ms for a
batch to fill. --max-batch-texts N --max-wait-ms 0, with N the texts of one request, turns batching
off (one request per model call). /docs (Swagger UI) loads its page from a CDN and needs the
internet; /openapi.json, the same API description as JSON, does not."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt serve`` and its options."""
    parser = subparsers.add_parser("serve", help="serve a model over HTTP (POST /predict, GET /health, /docs)",
                                   description=__doc__.split("\n\n")[0], epilog=EPILOG)
    parser.add_argument("model_dir", help="a saved model (--backend torch) or an ONNX export directory (--backend onnx)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="default torch")
    parser.add_argument("--precision", choices=PREDICTOR_PRECISIONS, default=None,
                        help="with --backend onnx: fp32 (default), int8 or int8-safe (int8 with fp32 re-runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--max-texts", type=int, default=256, help="most texts per request; more gets 413 (default 256)")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000,
                        help="largest request body; larger gets 413 (default 1000000)")
    parser.add_argument("--on-long-text", choices=["truncate", "refuse"], default="truncate",
                        help="texts over the model's saved token limit (config.json's max_seq_length; 256 when "
                             "unset): classify the tokens up to it and flag them (default), or answer 422")
    parser.add_argument("--max-batch-texts", "--batch-size", dest="max_batch_texts", type=int_at_least(1), default=64,
                        help="most texts per model call (one forward pass), from one or more requests (default 64)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long a queued text waits for a fuller batch, in ms (default 5; 0: no wait)")
    parser.add_argument("--max-queue-texts", type=int_at_least(1), default=2048,
                        help="most texts waiting for the model; more gets 503 with Retry-After (default 2048)")
    parser.add_argument("--request-timeout-s", type=float, default=30.0,
                        help="seconds a request may take; later gets 504 and its waiting texts are dropped (default 30)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Checks the options, then serves until Ctrl-C; the model loads once the server listens."""
    from mtt_helpers.serving.settings import ServiceSettings

    if not Path(args.model_dir).is_dir():
        fail(f"model directory not found: {args.model_dir}")
    if not 0 <= args.port <= 65535:
        fail(f"--port must be between 0 and 65535, got {args.port}")
    try:
        settings = ServiceSettings(max_texts=args.max_texts, max_body_bytes=args.max_body_bytes,
                                   on_long_text=args.on_long_text, max_batch_texts=args.max_batch_texts,
                                   max_wait_ms=args.max_wait_ms, max_queue_texts=args.max_queue_texts,
                                   request_timeout_s=args.request_timeout_s)
    except ValueError as error:
        fail(str(error))

    import uvicorn

    from mtt_helpers.backends import load_predictor
    from mtt_helpers.notebook import quiet
    from mtt_helpers.serving.app import create_app

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
    print(f"serving on http://{args.host}:{server.config.port} (API schema at /openapi.json); loading the model...",
          file=sys.stderr)
    server.run()
    if failure:
        fail(failure[0])
