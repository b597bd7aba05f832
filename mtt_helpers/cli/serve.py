"""Serve a multi-task model over HTTP: POST /predict, GET /health, /docs.

    mtt serve MODEL_DIR [--backend torch|onnx] [--precision fp32|int8|int8-safe] [--port 8000]

The service itself is ``mtt_helpers.serving.app`` (its docstring lists the answers and errors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mtt_helpers.backends import PREDICTOR_PRECISIONS
from mtt_helpers.cli.common import fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt serve`` and its options."""
    parser = subparsers.add_parser("serve", help="serve a model over HTTP (POST /predict, GET /health, /docs)",
                                   description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Checks the options, then serves until Ctrl-C; the model loads once the server listens."""
    from mtt_helpers.serving.settings import ServiceSettings

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
    print(f"serving on http://{args.host}:{server.config.port} (docs at /docs); loading the model...", file=sys.stderr)
    server.run()
    if failure:
        fail(failure[0])
