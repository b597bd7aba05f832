"""The HTTP service (``mtt serve``), the client that load-tests it, and a helper that runs it in a child process.

* :mod:`~mtt_helpers.serving.app`: ``create_app`` (FastAPI), with :mod:`.schema` (the request and
  answer bodies), :mod:`.body_limit` (the size limit) and :mod:`.settings` (``ServiceSettings``).
* :mod:`~mtt_helpers.serving.classifier`: the model behind it (token counts, then dynamic batches
  from :mod:`.batcher`).
* :mod:`~mtt_helpers.serving.client`: ``benchmark_service`` (the load-test client).
* :mod:`~mtt_helpers.serving.process`: ``running_service`` and ``service_process``.

Names are imported on first use: the client and the process helper need no FastAPI.
``prediction_records`` (the service's answer rows) lives in ``mtt_helpers.predictions``.
"""

from mtt_helpers.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".app": "create_app",  # imports FastAPI
    ".schema": "PredictRequest PredictResponse Prediction",
    ".settings": "ServiceSettings",
    ".batcher": "DynamicBatcher QueueFull",
    ".classifier": "BatchedClassifier",
    ".client": "benchmark_service load_summary run_load",
    ".process": "running_service service_process ServiceProcess",
    "mtt_helpers.predictions": "prediction_records",
})
