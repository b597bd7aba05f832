"""Export the multi-task model to ONNX and run it with onnxruntime, without torch.

1. ``export_onnx`` (:mod:`~mtt_helpers.onnx.export`): the *whole* model as one graph, plus
   ``config.json`` and the tokenizer files beside it, so the directory is self-contained.
2. ``quantize_int8`` (:mod:`~mtt_helpers.onnx.quantize`): static int8 quantisation of that graph, calibrated
   on texts (:mod:`~mtt_helpers.onnx.calibration`), so a text's outputs never depend on its batch;
   ``quantize_dynamic_int8``, the earlier per-batch method, for comparison.
3. ``OnnxPredictor`` (:mod:`~mtt_helpers.onnx.predictor`): tokenizer + ``onnxruntime.InferenceSession``;
   ``predict`` returns the table of ``MultiTaskSentenceTransformer.predict``.
4. ``CascadePredictor`` (:mod:`~mtt_helpers.onnx.cascade`): the int8 graph, with uncertain texts re-run in fp32.

Names are imported on first use: the predictors never import torch; ``export_onnx`` does.
"""

from mtt_helpers.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".layout": "EMBEDDING_OUTPUT INT8_FILE INT8_METADATA ONNX_FILE is_onnx_export logits_output",
    ".export": "check_exportable export_onnx",  # imports torch
    ".quantize": "CALIBRATION_METHODS quantize_dynamic_int8 quantize_int8",
    ".calibration": "CalibrationTexts bundled_calibration_texts csv_calibration_texts",
    ".predictor": "OnnxPredictor",
    ".cascade": "DEFAULT_MARGIN_THRESHOLD CascadePredictor cascade_curve rerun_mask top2_margin",
})
