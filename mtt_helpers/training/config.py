"""How to train: :class:`TrainConfig` and the recipe :func:`recipe_config` (what a run measured is
:class:`~mtt_helpers.training.result.TrainResult`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtt_helpers.precision import PRECISION_SETTINGS

ALL_LAYERS = "all"
"""``trainable_encoder_layers`` value that fine-tunes the whole encoder, embedding layer included."""


@dataclass
class TrainConfig:
    """How to train a :class:`MultiTaskSentenceTransformer`.

    The schedule defaults are the recipe of the whole-encoder probe (all training data: encoder
    lr 5e-5, head lr 1e-3, batch 32, 2 epochs, linear warmup and decay, clipping 1.0, 128 tokens,
    bf16 autocast), which reached dev topic macro-F1 0.773 and sentiment macro-recall 0.732.
    :func:`recipe_config` gives that whole configuration; the default ``trainable_encoder_layers``
    stays 0 (frozen) so that head-only uses stay cheap.
    """

    tasks: list[str] | None = None
    """Heads to train; ``None`` trains every head. Other heads stay frozen."""

    trainable_encoder_layers: int | str = 0
    """How many of the encoder's top transformer layers learn: 0 freezes it (cached embeddings);
    ``k`` trains the top ``k`` layers (the embedding layer stays frozen); ``"all"`` trains the
    whole encoder, embedding layer included (the recipe)."""

    epochs: int = 2
    """Passes over the training data (see ``steps_per_epoch``). Recipe: 2."""

    steps_per_epoch: int | None = None
    """Optimizer steps per epoch; ``None`` means one pass over all training rows."""

    batch_size: int = 32
    """Examples per optimizer step. Recipe: 32."""

    head_lr: float = 1e-3
    """Peak AdamW learning rate of the heads. Recipe: 1e-3."""

    encoder_lr: float = 5e-5
    """Peak AdamW learning rate of the trained encoder weights (small: they are pre-trained).
    Recipe: 5e-5 for the whole encoder (top-k runs in the notebooks used 1e-4)."""

    weight_decay: float = 0.01
    """AdamW weight decay for every trained parameter."""

    warmup_ratio: float = 0.1
    """Share of all planned steps (``epochs`` x steps per epoch) over which the learning rates
    rise linearly from 0; afterwards they fall linearly to 0 at the last planned step. The probe
    used warmup + linear decay; 0.1 is the usual BERT fine-tuning share (not tuned here)."""

    max_grad_norm: float | None = 1.0
    """Clip the norm of all trained parameters' gradients to this; ``None`` does not clip. Recipe: 1.0."""

    max_seq_length: int | None = 128
    """Truncate inputs to this many tokens (training, caching and dev scoring); after a run the
    model keeps it (``model.config.max_seq_length``), so it predicts, saves, exports and serves at
    the length it was trained and picked at. ``None`` keeps the model's own (256 for MiniLM).
    Recipe: 128, which cuts under 1% of tweets and headlines and halves the cost of the longest batches."""

    precision: str = "auto"
    """``"fp32"``, ``"bf16"`` (``torch.autocast`` with bfloat16 around every forward pass:
    training steps, cache filling, dev scoring; weights stay fp32; steps that train only the
    heads on cached embeddings stay fp32, as bf16 does not pay for so small a network) or ``"auto"``: bf16 where
    the hardware runs it natively, fp32 elsewhere (see :func:`mtt_helpers.precision.resolve_precision`:
    CUDA with compute capability >= 8; a CPU whose ``/proc/cpuinfo`` flags list ``avx512_bf16``
    or ``amx_bf16``)."""

    length_grouping: bool = True
    """Put texts of similar token count in the same batch, so batches pad little: each epoch's
    shuffled rows are cut into chunks of ``length_group_batches`` batches, each chunk is sorted
    by token count and cut into batches, and the batches are shuffled. Seeded like every draw.
    With ``round_robin``/``temperature`` sampling it is done within each dataset's shuffled
    queue. Used where there are tokens to pad (fine-tuning); cached sentence vectors have none."""

    length_group_batches: int = 50
    """Batches per sorted chunk: more packs tighter, fewer keeps batches more random."""

    task_weights: dict[str, float] = field(default_factory=dict)
    """Loss weight per task; missing tasks weigh 1.0."""

    task_sampling: str = "proportional"
    """How batches are drawn when each dataset (``source``) labels one task:
    ``"proportional"``: shuffle all rows together (mixed batches, bigger datasets seen more);
    ``"round_robin"``: alternate datasets, one batch each;
    ``"temperature"``: pick a dataset with probability proportional to ``size ** (1 / T)``."""

    sampling_temperature: float = 2.0
    """``T`` for temperature sampling (> 0): 1 is proportional, large values approach uniform."""

    patience: int = 2
    """Stop after this many epochs without a better dev score."""

    seed: int = 0
    """Seeds every shuffle, task draw and dropout mask, with generators of the run's own: the
    caller's global random state is left as it was. (The heads' initial weights are drawn when
    the model is built: call ``set_seed`` before that.)"""

    track_gradient_conflict: bool = False
    """Record the cosine between the two tasks' gradients on the trainable encoder
    parameters at every step that has labels for both (costs an extra backward pass)."""

    show_progress_bar: bool = True
    """Show a tqdm bar (with an ETA) per epoch."""

    cache_dir: str | None = ".mtt_cache"
    """Folder for cached frozen embeddings; ``None`` keeps them in memory only."""

    cache_lower_layers: bool = True
    """With ``trainable_encoder_layers=k`` (0 < k < layer count), compute the frozen lower
    layers' output once per text (in memory) and run only the top ``k`` layers at each step
    and dev evaluation. The same result (frozen layers run without dropout either way) and
    several times faster; costs about 60 KB of memory per text."""

    cached_layer: int | None = None
    """Which layer's output to cache; ``None`` means just below the trainable layers. A lower
    layer lets runs with different ``k`` share one cache (the layers in between run frozen)."""

    def to_dict(self) -> dict[str, Any]:
        """Every setting, JSON-ready: what ``training_args.json`` holds under ``train_config``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config :meth:`to_dict` described, every value checked as by the constructor.

        Raises:
            ValueError: an unknown key, or a value of the wrong type or out of range.
        """
        unknown = sorted(set(values) - {item.name for item in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown TrainConfig key(s) {unknown}.")
        try:
            return cls(**values)
        except TypeError as error:  # e.g. epochs="2": comparing it with 1 fails
            raise ValueError(f"Invalid TrainConfig {dict(values)}: {error}") from error

    def epoch_steps(self, n_rows: int) -> int:
        """Optimizer steps per epoch over ``n_rows`` training rows: ``steps_per_epoch``, or one pass."""
        return self.steps_per_epoch or math.ceil(n_rows / self.batch_size)

    def __post_init__(self) -> None:
        problems = []
        layers = self.trainable_encoder_layers
        if layers != ALL_LAYERS and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 0):
            problems.append(f"trainable_encoder_layers must be an int >= 0 or {ALL_LAYERS!r}, got {layers!r}")
        if self.task_sampling not in ("proportional", "round_robin", "temperature"):
            problems.append(f"Unknown task_sampling {self.task_sampling!r}")
        if self.precision not in PRECISION_SETTINGS:
            problems.append(f"precision must be one of {PRECISION_SETTINGS}, got {self.precision!r}")
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}"),
            (self.sampling_temperature > 0, f"sampling_temperature must be > 0, got {self.sampling_temperature}"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (self.head_lr > 0, f"head_lr must be > 0, got {self.head_lr}"),
            (self.encoder_lr > 0, f"encoder_lr must be > 0, got {self.encoder_lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0, f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (self.max_seq_length is None or self.max_seq_length >= 2, f"max_seq_length must be >= 2 or None, got {self.max_seq_length}"),
            (self.length_group_batches >= 1, f"length_group_batches must be >= 1, got {self.length_group_batches}"),
            (self.cached_layer is None or self.cached_layer >= 0, f"cached_layer must be >= 0 or None, got {self.cached_layer}"),
            (all(w >= 0 for w in self.task_weights.values()), f"task_weights must be >= 0, got {self.task_weights}"),
        ]
        problems += [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems) + ".")


def recipe_config(**overrides) -> TrainConfig:
    """The recommended recipe: whole encoder, every other field at its default.

    Example:
        ``train(model, train_frame, dev_frame, recipe_config(seed=1))``
    """
    return TrainConfig(**{"trainable_encoder_layers": ALL_LAYERS, "cache_dir": None, **overrides})
