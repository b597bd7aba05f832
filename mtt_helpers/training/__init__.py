"""Training and evaluation of the multi-task model (see :mod:`~mtt_helpers.training.loop` for the strategies).

* :mod:`~mtt_helpers.training.config`: ``TrainConfig`` and the recipe ``recipe_config``;
  :mod:`~mtt_helpers.training.result`: ``TrainResult``; :mod:`~mtt_helpers.training.args`:
  ``read_training_args`` (the settings a saved model was trained with).
* :mod:`~mtt_helpers.training.loop`: ``train`` and ``train_sequential``; :mod:`~mtt_helpers.training.checks`:
  what ``train`` refuses before any work.
* :mod:`~mtt_helpers.training.evaluate`: metrics, dev loss and the early-stopping score.
* :mod:`~mtt_helpers.training.sampling`, ``.optim``, ``.losses``, ``.freezing``, ``.embedder``, ``.rng``:
  the loop's parts.
* :mod:`~mtt_helpers.training.cache` (with ``cache_embeddings``, ``cache_layers``, ``cache_disk``):
  encoder outputs computed once per text.
* :mod:`~mtt_helpers.training.contrastive` and :mod:`~mtt_helpers.training.self_training`: the
  low-resource methods of chapter 04; :mod:`~mtt_helpers.training.setfit_run`: the SetFit library, which
  it compares them with.
"""

from mtt_helpers.training.args import read_training_args
from mtt_helpers.training.cache import DEFAULT_CACHE, EmbeddingCache, clear_caches, text_key, weights_key
from mtt_helpers.training.cache_embeddings import cached_embeddings
from mtt_helpers.training.cache_layers import cached_hidden_states, embed_from_layer
from mtt_helpers.training.config import ALL_LAYERS, TrainConfig, recipe_config
from mtt_helpers.training.contrastive import ContrastiveConfig, ContrastiveResult, contrastive_tune
from mtt_helpers.training.embedder import BatchEmbedder, make_batch_embedder
from mtt_helpers.training.evaluate import MAIN_METRIC, dev_score, evaluate, predict_labels, task_logits, task_metrics
from mtt_helpers.training.freezing import set_trainable, truncated_to
from mtt_helpers.training.loop import train, train_sequential
from mtt_helpers.training.losses import gradient_cosine, task_losses
from mtt_helpers.training.optim import optimizer_step
from mtt_helpers.training.result import TrainResult
from mtt_helpers.training.sampling import batch_indices, length_grouped_order, padded_token_ratio, padding_counts
from mtt_helpers.training.self_training import SelfTrainingConfig, pseudo_labels, self_train
from mtt_helpers.training.setfit_run import SetFitRun, setfit_default_steps, train_setfit

__all__ = [
    "ALL_LAYERS", "BatchEmbedder", "ContrastiveConfig", "ContrastiveResult", "DEFAULT_CACHE", "EmbeddingCache",
    "MAIN_METRIC", "SelfTrainingConfig", "SetFitRun", "TrainConfig", "TrainResult", "batch_indices",
    "cached_embeddings", "cached_hidden_states", "clear_caches", "contrastive_tune", "dev_score",
    "embed_from_layer", "evaluate", "gradient_cosine", "length_grouped_order", "make_batch_embedder",
    "optimizer_step", "padded_token_ratio", "padding_counts", "predict_labels", "pseudo_labels", "read_training_args", "recipe_config",
    "self_train", "set_trainable", "setfit_default_steps", "task_logits", "task_losses", "task_metrics", "text_key",
    "train", "train_sequential", "train_setfit", "truncated_to", "weights_key",
]
