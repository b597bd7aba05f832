"""The HTTP service (``mtt serve``), the client that load-tests it, and a helper that runs it in a child process.

* :mod:`~mtt_helpers.serving.app`: ``create_app`` (FastAPI), with :mod:`.schema` (the request and
  answer bodies), :mod:`.body_limit` (the size limit) and :mod:`.settings` (``ServiceSettings``).
* :mod:`~mtt_helpers.serving.client`: ``benchmark_service``.
* :mod:`~mtt_helpers.serving.process`: ``running_service``.

Names are imported on first use: the client and the process helper need no FastAPI.
``prediction_records`` (the service's answer rows) lives in ``mtt_helpers.predictions``.
"""

from mtt_helpers.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".app": "create_app",  # imports FastAPI
    ".schema": "PredictRequest PredictResponse Prediction",
    ".settings": "ServiceSettings",
    ".client": "benchmark_service",
    ".process": "running_service",
    "mtt_helpers.predictions": "prediction_records",
})
