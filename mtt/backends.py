"""One place that turns ``--backend`` and ``--precision`` into a loaded model, for the command line and the service.

The ONNX backend never imports torch; each backend's modules are imported only when it is asked for.
"""

from __future__ import annotations

import os

PREDICTOR_PRECISIONS = ("fp32", "int8", "int8-safe")
"""The ONNX backend's precisions: the fp32 graph, the int8 graph, or the int8 -> fp32 cascade
(the training precisions are ``mtt_helpers.precision.PRECISION_SETTINGS``)."""


def load_predictor(model_dir: str | os.PathLike, backend: str = "torch", precision: str | None = None,
                   margin_threshold: float | None = None, intra_op_num_threads: int | None = None):
    """Loads the model a command line asks for.

    Args:
        model_dir: A saved model (``backend="torch"``) or an ONNX export folder (``"onnx"``).
        backend: ``"torch"`` or ``"onnx"``.
        precision: With ``onnx``: ``"fp32"`` (``model.onnx``, the default), ``"int8"`` (``model.int8.onnx``)
            or ``"int8-safe"`` (``CascadePredictor`` over both). With ``torch``: ``None`` or ``"fp32"``.
        margin_threshold: With ``int8-safe``: the cascade's margin (default ``DEFAULT_MARGIN_THRESHOLD``).
        intra_op_num_threads: onnxruntime threads per operator (``None``: its default).

    Returns:
        An object with ``predict(texts, batch_size)`` returning the predictions table, and ``config``.

    Raises:
        ValueError: an option combination that does not make sense, or a model that fails its checks.
        FileNotFoundError: a model file is missing.
        ImportError: the ``onnx`` backend without onnxruntime.
    """
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}.")
    if precision is not None and precision not in PREDICTOR_PRECISIONS:
        raise ValueError(f"precision must be one of {PREDICTOR_PRECISIONS}, got {precision!r}.")
    if margin_threshold is not None and precision != "int8-safe":
        raise ValueError("a cascade margin only applies to --precision int8-safe.")
    if backend == "torch":
        if precision not in (None, "fp32"):
            raise ValueError("--precision int8 and int8-safe need --backend onnx (export the model first).")
        from mtt_helpers.model import MultiTaskSentenceTransformer

        return MultiTaskSentenceTransformer.load(model_dir)

    from mtt_core.model_files import INT8_FILE, ONNX_FILE
    from mtt_core.onnx_runtime import DEFAULT_MARGIN_THRESHOLD, CascadePredictor, OnnxPredictor

    if precision == "int8-safe":
        margin = DEFAULT_MARGIN_THRESHOLD if margin_threshold is None else margin_threshold
        return CascadePredictor(model_dir, margin_threshold=margin, intra_op_num_threads=intra_op_num_threads)
    return OnnxPredictor(model_dir, onnx_file=INT8_FILE if precision == "int8" else ONNX_FILE,
                         intra_op_num_threads=intra_op_num_threads)
