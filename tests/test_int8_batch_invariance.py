"""A text's int8 prediction is the same alone and inside any batch; dynamic int8 fails the same check."""

import shutil

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mtt_core.model_files import INT8_FILE, ONNX_FILE
from mtt_core.onnx_runtime import CascadePredictor, OnnxPredictor, top2_margin
from mtt_helpers.data import load_bundled
from mtt_helpers.onnx import quantize_dynamic_int8

TOLERANCE = 1e-3
"""Largest change of a logit allowed between a text alone and the text inside a batch.

Static int8 rounds each activation with a fixed scale and multiplies integers exactly, so only
the fp32 operators around the products (LayerNorm, softmax, padded attention) can differ, in
their last bits: 1.2e-7 at most on a trained model's logits, as for the fp32 graph. Such a
difference moves an activation across a rounding boundary only rarely, and then by one step in
one element of one token, which the later layers and the mean over tokens dilute; the
tolerance leaves room for that. Dynamic int8 changes every activation's scale with the batch:
it moved the same trained model's logits by up to 5.6e-2, and those of this file's
random-headed test model by 7.7e-3 (:func:`test_the_check_fails_on_a_dynamically_quantised_graph`).
"""

TASKS = ("topic", "sentiment")


@pytest.fixture(scope="module")
def pool():
    """Other texts to surround the checked text with: short bundled sentences and long ones."""
    texts = load_bundled()["text"].tolist()
    return texts + [" ".join(texts[start : start + 8]) for start in range(0, 80, 8)]


def ten_batches(text: str, pool: list[str], seed: int) -> list[tuple[list[str], int]]:
    """Ten batches holding ``text`` among random others: sizes from 2 to 64 texts, a random
    position, and a batch size that runs each as one pass or as token-sorted passes of 8."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(10):
        others = [pool[i] for i in rng.choice(len(pool), int(rng.integers(1, 64)), replace=False)]
        position = int(rng.integers(0, len(others) + 1))
        batch = others[:position] + [text] + others[position:]
        batches.append((batch, len(batch) if rng.random() < 0.5 else 8))
    return batches


def batch_dependence(predictor, text: str, pool: list[str], seed: int = 0) -> tuple[dict[str, set], float]:
    """``text`` alone and inside :func:`ten_batches`: the labels it got per task, and the largest
    change of a logit from the alone run."""
    alone = predictor.predict_logits([text])
    labels = {task: {int(alone[task][0].argmax())} for task in TASKS}
    largest = 0.0
    for batch, batch_size in ten_batches(text, pool, seed):
        outputs = predictor.predict_logits(batch, batch_size=batch_size)
        row = batch.index(text)
        for task in TASKS:
            labels[task].add(int(outputs[task][row].argmax()))
            largest = max(largest, float(np.abs(outputs[task][row] - alone[task][0]).max()))
    return labels, largest


CHECKED_TEXTS = ["ok", "The striker scored twice in the final minutes.",
                 "Stocks fell sharply after the central bank raised interest rates again this quarter, "
                 "and analysts expect the slide to continue until the next earnings season."]


@pytest.mark.parametrize("text", CHECKED_TEXTS)
def test_static_int8_gives_a_text_one_answer_in_every_batch(onnx_export, pool, text):
    labels, largest = batch_dependence(OnnxPredictor(onnx_export, onnx_file=INT8_FILE), text, pool)
    assert all(len(seen) == 1 for seen in labels.values()), labels
    assert largest <= TOLERANCE


@pytest.mark.parametrize("rerun", [False, True], ids=["kept-int8", "rerun-fp32"])
@pytest.mark.parametrize("text", CHECKED_TEXTS)
def test_the_cascade_gives_a_text_one_answer_in_every_batch(onnx_export, pool, text, rerun):
    # A threshold at half or twice the text's own int8 margin: the text keeps its int8 row or is re-run in fp32.
    logits = OnnxPredictor(onnx_export, onnx_file=INT8_FILE).predict_logits([text])
    margin = min(float(top2_margin(logits[task])[0]) for task in TASKS)
    cascade = CascadePredictor(onnx_export, margin_threshold=margin * (2 if rerun else 0.5))
    labels, largest = batch_dependence(cascade, text, pool)
    cascade.predict_logits([text])
    assert cascade.last_rerun_share == rerun
    assert all(len(seen) == 1 for seen in labels.values()), labels
    assert largest <= TOLERANCE


def test_the_check_fails_on_a_dynamically_quantised_graph(onnx_export, pool, tmp_path):
    """The check can fail: dynamic int8 (activation scales per batch) moves the same logits
    far beyond the tolerance."""
    export = tmp_path / "dynamic"
    shutil.copytree(onnx_export, export)  # the copy's int8 graph is replaced by the dynamic one
    quantize_dynamic_int8(export / ONNX_FILE)
    largest = max(batch_dependence(OnnxPredictor(export, onnx_file=INT8_FILE), text, pool)[1]
                  for text in CHECKED_TEXTS)
    assert largest > TOLERANCE
