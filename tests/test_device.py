"""Device placement, checked on a machine without a GPU: a model on PyTorch's ``meta`` device.

On a CUDA GPU, a CPU tensor that reaches a module on the GPU raises ``Expected all tensors to be on the
same device``. The ``meta`` device does the same on any machine ("Tensor on device meta is not on the
expected device cpu"), so a model moved to ``meta`` shows every place where a batch, a target or a
cached embedding reaches it from the CPU without ``.to(device)``. Meta tensors have shapes but no
values; :class:`ReadMetaAsOnes` lets code read them (``.item()``, ``.cpu()``) as ones, so the code runs
end to end and only its device placement is tested.
"""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mtt_helpers import IGNORE_INDEX, MultiTaskSentenceTransformer, TrainConfig, evaluate, set_seed, train
from mtt_helpers.data import encode_labels, load_bundled, multitask_frame
from mtt_helpers.embedding_cache import EmbeddingCache

CHAPTER_03 = Path(__file__).resolve().parents[1] / "notebooks" / "03_joint_vs_sequential_training.ipynb"


class ReadMetaAsOnes(TorchDispatchMode):
    """Reading a meta tensor gives ones (an attention mask: every token; a truth value: ``True``), instead of an error."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if source is not None and source.device.type == "meta":
            if func is torch.ops.aten._local_scalar_dense.default:
                return True if source.dtype == torch.bool else 1.0
            if func is torch.ops.aten._to_copy.default and torch.device(kwargs.get("device") or "meta").type == "cpu":
                return torch.ones(source.shape, dtype=kwargs.get("dtype") or source.dtype)
        return func(*args, **kwargs)


@pytest.fixture()
def meta_model(encoder):
    set_seed(0)
    return MultiTaskSentenceTransformer(copy.deepcopy(encoder)).to("meta")


@pytest.fixture(scope="module")
def rows():
    bundled = load_bundled("train").iloc[:24]
    topic = bundled[["text", "topic"]].rename(columns={"topic": "label"})[:12]
    sentiment = bundled[["text", "sentiment"]].rename(columns={"sentiment": "label"})[12:]
    return multitask_frame(topic=topic, sentiment=sentiment), multitask_frame(bundled=load_bundled("dev").iloc[:12])


def test_a_cpu_tensor_that_reaches_a_meta_model_raises(meta_model):
    """The premise of the tests below: the meta device catches a batch left on the CPU."""
    with pytest.raises(RuntimeError, match="meta"):
        meta_model.classify(torch.randn(2, 384))


@pytest.mark.parametrize("layers", [0, 2, "all"])
def test_train_and_evaluate_move_every_batch_to_the_models_device(meta_model, rows, layers):
    train_frame, held_out = rows
    config = TrainConfig(trainable_encoder_layers=layers, epochs=1, batch_size=8, show_progress_bar=False, precision="fp32")
    with ReadMetaAsOnes():
        result = train(meta_model, train_frame, held_out, config, EmbeddingCache())
        metrics = evaluate(meta_model, held_out)
    assert len(result.history) == 1 and set(metrics) == {"topic", "sentiment"}
    assert {p.device.type for p in meta_model.parameters()} == {"meta"}


def chapter_functions(*names):
    """The functions the chapter defines in its own cells (the learner's code), by name."""
    cells = json.loads(CHAPTER_03.read_text(encoding="utf-8"))["cells"]
    namespace = {"torch": torch, "F": F, "IGNORE_INDEX": IGNORE_INDEX}
    for name in names:
        sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"
                   and f"def {name}(" in "".join(cell["source"])]
        assert sources, f"chapter 03 defines no {name}()"
        source = sources[0]
        start = source.index(f"def {name}(")
        end = source.find("\ndef ", start + 1)
        exec(source[start: end if end > 0 else None], namespace)
    return namespace


def test_the_chapters_training_step_moves_its_batch_to_the_models_device(meta_model, rows):
    """Chapter 03's own training step, as the reader writes it, on a model whose weights are not on the CPU
    (on a GPU, as on Colab): the cached embeddings and the targets come from the CPU."""
    chapter = chapter_functions("masked_multitask_loss", "training_step")
    train_frame, _ = rows
    embeddings = torch.randn(len(train_frame), 384)
    targets = {task: encode_labels(train_frame, task) for task in ("topic", "sentiment")}
    optimizer = torch.optim.AdamW(meta_model.heads.parameters(), lr=1e-3)
    meta_model.train()
    with ReadMetaAsOnes():
        chapter["training_step"](meta_model, optimizer, embeddings[:8], {task: y[:8] for task, y in targets.items()})
