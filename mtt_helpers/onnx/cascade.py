"""Int8 speed with fp32 labels: run the int8 graph, re-run only the uncertain texts in fp32.

Dynamic int8 quantisation flips a few percent of labels on a fine-tuned model, almost all
of them texts whose two best classes are close. A *cascade* runs every text through the
int8 graph, then re-runs in the fp32 graph only the texts whose top-2 logit margin is below
``margin_threshold`` in *any* task, and keeps the fp32 outputs for those.

Typical use (an export directory holding both ``model.onnx`` and ``model.int8.onnx``, e.g.
from ``mtt export MODEL_DIR OUT_DIR --int8``)::

    predictor = CascadePredictor("onnx_model")
    predictor.predict(["Great match!"])      # same table as OnnxPredictor.predict
    predictor.last_rerun_share               # share of texts re-run in fp32

:func:`cascade_curve` computes the trade-off (threshold -> share re-run -> agreement) from
the two graphs' logits, so a notebook can plot it and pick a threshold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mtt_helpers.onnx.layout import INT8_FILE, ONNX_FILE
from mtt_helpers.onnx.predictor import OnnxPredictor
from mtt_helpers.predictions import check_texts, predictions_table

DEFAULT_MARGIN_THRESHOLD = 0.2
"""Default top-2 logit margin below which a text is re-run in fp32.

Chosen on dev data (the first 1,000 TweetEval dev tweets + 1,000 HuffPost dev headlines)
with a model fine-tuned from all-MiniLM-L6-v2 (top 2 layers, one epoch on 2,000 + 2,000
training texts), against ONNX fp32 labels:

=========  ===========  ===============  ===================
threshold  share re-run  topic agreement  sentiment agreement
=========  ===========  ===============  ===================
0 (int8)   0%           97.6%            97.2%
0.1        13.1%        98.8%            99.5%
0.15       19.6%        99.3%            99.8%
0.2        25.3%        99.5%            99.9%
0.3        35.8%        99.8%            99.95%
=========  ===========  ===============  ===================

0.15 is the smallest threshold reaching 99% on both tasks; 0.2 keeps half a point in hand
for other fine-tuned models (issue 13 measured 99.5% / 99.9% at 0.2 on the model of
``mtt train``). Larger thresholds re-run so many texts that the cascade
costs as much as plain fp32."""


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Best minus second-best logit per row: small means the model nearly chose another class.

    Args:
        logits: ``(n, classes)`` array, ``classes >= 2``.

    Returns:
        ``(n,)`` non-negative margins.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, classes >= 2), got {logits.shape}.")
    top_two = np.partition(logits, -2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def rerun_mask(logits: dict[str, np.ndarray], margin_threshold: float) -> np.ndarray:
    """Which texts the cascade re-runs: margin below ``margin_threshold`` in any task."""
    margins = [top2_margin(task_logits) for task_logits in logits.values()]
    return np.logical_or.reduce([margin < margin_threshold for margin in margins])


def cascade_curve(
    int8_logits: dict[str, np.ndarray],
    fp32_logits: dict[str, np.ndarray],
    thresholds: Sequence[float],
    int8_seconds: float | None = None,
    fp32_seconds: float | None = None,
    task_rows: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The cascade's trade-off for each threshold, from logits of the same texts.

    Args:
        int8_logits: ``{task: (n, classes)}`` from the int8 graph.
        fp32_logits: The same tasks and texts from the fp32 graph (the reference labels).
        thresholds: Margins to evaluate.
        int8_seconds: Optional time the int8 graph took for all ``n`` texts.
        fp32_seconds: Optional time the fp32 graph took for all ``n`` texts. With both
            times, ``speedup_vs_fp32`` estimates the cascade's speed as
            ``fp32 / (int8 + share_rerun * fp32)`` (tokenization and loading not included).
        task_rows: Optional ``{task: (n,) bool mask}``: measure that task's agreement on these
            rows only (e.g. the texts that carry its label, when headlines and tweets are mixed).
            Tasks not named use every row. ``share_rerun`` always counts every row, since the
            cascade decides on all of them.

    Returns:
        One row per threshold: ``threshold``, ``share_rerun`` and ``agreement_<task>``
        (share of texts whose cascade label equals the fp32 label), plus
        ``speedup_vs_fp32`` when both times are given. Threshold 0 is plain int8.
    """
    tasks = list(fp32_logits)
    if set(int8_logits) != set(tasks):
        raise ValueError(f"int8 tasks {sorted(int8_logits)} differ from fp32 tasks {sorted(tasks)}.")
    for task in tasks:
        if np.shape(int8_logits[task]) != np.shape(fp32_logits[task]):
            raise ValueError(
                f"Task {task!r}: int8 logits {np.shape(int8_logits[task])} and fp32 logits "
                f"{np.shape(fp32_logits[task])} differ in shape."
            )
    masks = {task: np.ones(len(np.asarray(fp32_logits[task])), dtype=bool) for task in tasks}
    for task, mask in (task_rows or {}).items():
        if task not in masks:
            raise ValueError(f"task_rows names unknown task {task!r}; expected one of {tasks}.")
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != masks[task].shape or not mask.any():
            raise ValueError(
                f"task_rows[{task!r}] must be a boolean mask of shape {masks[task].shape} selecting at least "
                f"one row, got dtype {mask.dtype} and shape {mask.shape}."
            )
        masks[task] = mask
    int8_labels = {task: np.asarray(int8_logits[task]).argmax(axis=1) for task in tasks}
    fp32_labels = {task: np.asarray(fp32_logits[task]).argmax(axis=1) for task in tasks}
    rows = []
    for threshold in thresholds:
        rerun = rerun_mask({task: int8_logits[task] for task in tasks}, threshold)
        row = {"threshold": float(threshold), "share_rerun": float(rerun.mean())}
        for task in tasks:
            # Re-run texts take the fp32 label, so they always agree; the rest keep int8's.
            agree = (int8_labels[task] == fp32_labels[task]) | rerun
            row[f"agreement_{task}"] = float(agree[masks[task]].mean())
        if int8_seconds is not None and fp32_seconds is not None:
            row["speedup_vs_fp32"] = fp32_seconds / (int8_seconds + row["share_rerun"] * fp32_seconds)
        rows.append(row)
    return pd.DataFrame(rows)


class CascadePredictor:
    """Int8 graph for every text, fp32 graph for the uncertain ones; ``OnnxPredictor``'s interface.

    Args:
        directory: An export directory holding both graphs, ``config.json`` and the tokenizer.
        margin_threshold: Texts whose top-2 logit margin is below this in any task are
            re-run in fp32. 0 is plain int8; a large value is plain fp32 (slower than either).
        fp32_file: The fp32 graph inside ``directory``.
        int8_file: The int8 graph inside ``directory``.
        intra_op_num_threads: Passed to both ``OnnxPredictor`` sessions.

    Raises:
        FileNotFoundError: a graph, the config or the tokenizer is missing.
        ValueError: ``margin_threshold`` is negative, or the two graphs do not match.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        margin_threshold: float = DEFAULT_MARGIN_THRESHOLD,
        fp32_file: str = ONNX_FILE,
        int8_file: str = INT8_FILE,
        intra_op_num_threads: int | None = None,
    ) -> None:
        if not isinstance(margin_threshold, (int, float)) or not margin_threshold >= 0:
            raise ValueError(f"margin_threshold must be a number >= 0, got {margin_threshold!r}.")
        self.margin_threshold = float(margin_threshold)
        self.int8 = OnnxPredictor(directory, onnx_file=int8_file, intra_op_num_threads=intra_op_num_threads)
        self.fp32 = OnnxPredictor(directory, onnx_file=fp32_file, intra_op_num_threads=intra_op_num_threads)
        self.last_rerun_share: float | None = None
        """Share of the texts of the last ``predict_logits`` call that were re-run in fp32."""
        # OnnxPredictor's interface: both graphs share the export's config and tokenizer.
        self.config, self.task_names = self.fp32.config, self.fp32.task_names
        self.tokenizer, self.max_seq_length = self.fp32.tokenizer, self.fp32.max_seq_length

    def predict_logits(self, texts: Sequence[str], batch_size: int = 32) -> dict[str, np.ndarray]:
        """``{"embedding": ..., task: logits, ...}`` in input order; uncertain rows come from fp32."""
        texts = check_texts(texts)
        outputs = self.int8.predict_logits(texts, batch_size)
        rerun = np.flatnonzero(rerun_mask({task: outputs[task] for task in self.task_names}, self.margin_threshold))
        if len(rerun):
            exact = self.fp32.predict_logits([texts[i] for i in rerun], batch_size)
            for name, values in exact.items():
                outputs[name] = outputs[name].astype(values.dtype, copy=True)
                outputs[name][rerun] = values
        self.last_rerun_share = len(rerun) / len(texts)
        return outputs

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> pd.DataFrame:
        """Classifies sentences for every task; the layout of ``OnnxPredictor.predict``."""
        texts = check_texts(texts)
        return predictions_table(texts, self.predict_logits(texts, batch_size), self.config.tasks)
