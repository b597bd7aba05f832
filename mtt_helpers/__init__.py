"""The multitask_transformer tutorial's code, collected: what the chapters build, importable.

Each module is one chapter's idea; the names below are the ones the chapters use most.

* ``encoder`` (chapter 01): ``load_encoder``, ``embed``, ``similarity_table``.
* ``model`` (chapter 02): ``MLPHead``, ``MultiTaskSentenceTransformer`` (with ``save``/``load``).
* ``data`` (chapters 01-04): the bundled sentences, the public datasets, and training tables.
* ``training`` (chapter 03): ``TrainConfig``, ``train`` and its parts (``masked_loss``, ``batch_indices``),
  ``evaluate``; ``embedding_cache``: encoder outputs computed once; ``precision``: bf16, fp16 or fp32.
* ``lowres`` (chapter 04): augmentation, contrastive tuning, self-training, SetFit.
* ``onnx`` (chapter 05): ``export_onnx``, ``quantize_int8``.
* ``measure``: paired verdicts over seeds (``claim``), timings, peak memory, tables.
* ``notebook``: ``quiet`` and ``set_seed``, for entry points only.

The torch-free parts shared with production (``config.json``, labels, the predictions table, the ONNX
runtime) live in ``mtt_core``; the ``mtt`` command and the HTTP service live in ``mtt``.
"""

from importlib.metadata import version

from mtt_core.labels import SENTIMENT_LABELS, TOPIC_LABELS
from mtt_core.model_files import MultiTaskConfig
from mtt_helpers.data import (
    IGNORE_INDEX, class_counts, encode_labels, load_external, load_task_data, multitask_frame, stratified_sample,
    validation_split,
)
from mtt_helpers.embedding_cache import EmbeddingCache
from mtt_helpers.encoder import embed, load_encoder, similarity_table
from mtt_helpers.measure import claim, compare, paired_gains
from mtt_helpers.model import MLPHead, MultiTaskSentenceTransformer
from mtt_helpers.notebook import quiet, set_seed
from mtt_helpers.precision import resolve_precision
from mtt_helpers.training import (
    TrainConfig, batch_indices, evaluate, masked_loss, recipe_config, train, train_sequential,
)

__version__ = version("mtt_helpers")

__all__ = [
    "IGNORE_INDEX", "SENTIMENT_LABELS", "TOPIC_LABELS", "EmbeddingCache", "MLPHead", "MultiTaskConfig",
    "MultiTaskSentenceTransformer", "TrainConfig", "batch_indices", "claim", "class_counts", "compare", "embed",
    "encode_labels", "evaluate", "load_encoder", "load_external", "load_task_data", "masked_loss", "multitask_frame",
    "paired_gains", "quiet", "recipe_config", "resolve_precision", "set_seed", "similarity_table", "stratified_sample",
    "train", "train_sequential", "validation_split",
]
