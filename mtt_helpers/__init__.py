"""Helpers for the multitask_transformer tutorial.

The names below are imported on first use: ``import mtt_helpers`` alone does not import torch.
The subpackages hold the rest: ``mtt_helpers.model``, ``.data``, ``.training``, ``.onnx``,
``.serving`` and ``.cli`` (the ``mtt`` command).
"""

from mtt_helpers.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".model.encoder": "EMBEDDING_DIM HUB_MODEL_ID embed get_device load_encoder similarity_table",
    ".model.heads": "MLPHead",
    ".model.multitask": "MultiTaskSentenceTransformer",
    ".config": "MultiTaskConfig SENTIMENT_LABELS TOPIC_LABELS",
    ".predictions": "check_texts",
    ".notebook": "quiet set_seed",
})
