"""One place that turns ``--backend``/``--precision`` into a loaded model, for the CLIs and the service.

The ONNX backend never imports torch; each backend's modules are imported only when it is asked for.
"""

from __future__ import annotations

import os

PREDICTOR_PRECISIONS = ("fp32", "int8", "int8-safe")
"""``--precision`` choices of the predictors: the fp32 graph, the int8 graph, or the int8 -> fp32
cascade (the training precisions are ``mtt_helpers.precision.PRECISION_SETTINGS``)."""


def load_predictor(
    model_dir: str | os.PathLike,
    backend: str = "torch",
    precision: str | None = None,
    onnx_file: str | None = None,
    margin_threshold: float | None = None,
    intra_op_num_threads: int | None = None,
):
    """Loads the model a command line asks for.

    Args:
        model_dir: A saved model (``backend="torch"``) or an ONNX export directory (``"onnx"``).
        backend: ``"torch"`` or ``"onnx"``.
        precision: With ``onnx``: ``"fp32"`` (``model.onnx``, the default), ``"int8"``
            (``model.int8.onnx``) or ``"int8-safe"`` (:class:`~mtt_helpers.onnx.CascadePredictor`
            over both). With ``torch`` only ``None`` or ``"fp32"``.
        onnx_file: With ``onnx``: run this graph instead (not together with ``precision``).
        margin_threshold: With ``int8-safe``: the cascade's margin (default
            :data:`~mtt_helpers.onnx.DEFAULT_MARGIN_THRESHOLD`).
        intra_op_num_threads: onnxruntime threads per operator (``None``: its default).

    Returns:
        An object with ``predict(texts, batch_size)`` returning the prediction table, and
        ``config`` (a ``MultiTaskConfig``).

    Raises:
        ValueError: an option combination that does not make sense, or an unreadable model.
        FileNotFoundError: a model file is missing.
        ImportError: ``onnx`` backend without onnxruntime.
    """
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}.")
    if precision is not None and precision not in PREDICTOR_PRECISIONS:
        raise ValueError(f"precision must be one of {PREDICTOR_PRECISIONS}, got {precision!r}.")
    if margin_threshold is not None and precision != "int8-safe":
        raise ValueError("a cascade margin only applies to --precision int8-safe.")
    if backend == "torch":
        if precision not in (None, "fp32") or onnx_file is not None:
            raise ValueError("--precision int8/int8-safe and --onnx-file need --backend onnx (export the model first).")
        from mtt_helpers.model.multitask import MultiTaskSentenceTransformer

        return MultiTaskSentenceTransformer.load(model_dir)

    from mtt_helpers.onnx.layout import INT8_FILE, ONNX_FILE
    from mtt_helpers.onnx.predictor import OnnxPredictor

    if onnx_file is not None and precision is not None:
        raise ValueError("give either --onnx-file or --precision, not both.")
    if precision == "int8-safe":
        from mtt_helpers.onnx.cascade import DEFAULT_MARGIN_THRESHOLD, CascadePredictor

        margin = DEFAULT_MARGIN_THRESHOLD if margin_threshold is None else margin_threshold
        return CascadePredictor(model_dir, margin_threshold=margin, intra_op_num_threads=intra_op_num_threads)
    graph = onnx_file or (INT8_FILE if precision == "int8" else ONNX_FILE)
    return OnnxPredictor(model_dir, onnx_file=graph, intra_op_num_threads=intra_op_num_threads)
