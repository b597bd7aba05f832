"""Running an ONNX export without torch: its tokenizer, the predictor, and the int8 -> fp32 cascade.

An export directory holds ``model.onnx`` (and ``model.int8.onnx``), ``config.json``, the tokenizer
files and ``manifest.json`` (written by ``mtt_helpers.onnx.export_onnx`` or ``mtt export``).

* :class:`OnnxPredictor`: the export's tokenizer (the ``tokenizers`` library alone) and an
  ``onnxruntime.InferenceSession``; ``predict`` returns the torch model's table. Every file it reads
  is checked against the digest the export recorded, and a graph named int8 must say it is int8.
* The cascade (chapter 05): :func:`rerun_mask` decides which texts the int8 graph may answer alone;
  :class:`CascadePredictor` re-runs the others in fp32; :func:`cascade_curve` gives the trade-off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtt_core.files import verify_files
from mtt_core.model_files import (
    CONFIG_FILE, EMBEDDING_OUTPUT, INT8_FILE, ONNX_FILE, MultiTaskConfig, check_max_seq_length, check_saved_labels,
    logits_output,
)
from mtt_core.predictions import check_texts, predictions_table, run_token_sorted

TOKENIZER_FILE = "tokenizer.json"
"""The ``tokenizers`` pipeline, written by ``save_pretrained`` of a fast Hugging Face tokenizer."""

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
"""The Hugging Face tokenizer's settings: pad token, padding and truncation sides, length limit."""

DEFAULT_MARGIN_THRESHOLD = 0.2
"""The cascade's default: texts whose top-2 logit margin is below this in any task are re-run in fp32.
Chapter 05 measures the trade-off on the recipe's model (``cascade_curve``)."""


def _token_text(token: str | dict) -> str:
    """A special token as ``tokenizer_config.json`` stores it: a string, or an ``AddedToken`` dict."""
    return token["content"] if isinstance(token, dict) else token


def load_tokenizers(directory: Path, max_seq_length: int | None):
    """The counting and the batching tokenizer of an export directory, and the token limit.

    One copy counts every text's tokens (truncation and padding off); the other cuts texts at the
    limit and pads each batch to its longest text, as the Hugging Face tokenizer does with
    ``padding=True, truncation=True, max_length=...``.

    Args:
        directory: An export directory.
        max_seq_length: The model's limit (its ``config.json``); ``None`` takes the tokenizer's
            ``model_max_length``. Either way it must pass ``check_max_seq_length`` up to that maximum.

    Returns:
        ``(counting, batching, max_seq_length)``: two ``tokenizers.Tokenizer``.

    Raises:
        FileNotFoundError: a tokenizer file is missing.
        ValueError: a tokenizer file cannot be read, or the limit is out of range.
    """
    from tokenizers import Tokenizer

    missing = [name for name in (TOKENIZER_CONFIG_FILE, TOKENIZER_FILE) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Missing tokenizer files in {str(directory)!r} ({', '.join(missing)}).")
    try:
        settings = json.loads((directory / TOKENIZER_CONFIG_FILE).read_text(encoding="utf-8"))
        counting = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        batching = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        maximum = int(settings["model_max_length"])
        pad_token = _token_text(settings["pad_token"])
        pad_id = batching.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"the pad token {pad_token!r} is not in the vocabulary")
    except Exception as error:  # json, a missing key, or the tokenizers library (which raises plain Exceptions)
        raise ValueError(f"Cannot load the tokenizer from {str(directory)!r}: {error}") from error
    max_seq_length = check_max_seq_length(maximum if max_seq_length is None else max_seq_length, maximum)
    counting.no_truncation()
    counting.no_padding()
    batching.enable_truncation(max_seq_length, strategy="longest_first",
                               direction=settings.get("truncation_side", "right"))
    batching.enable_padding(direction=settings.get("padding_side", "right"), pad_id=pad_id, pad_token=pad_token,
                            pad_type_id=int(settings.get("pad_token_type_id", 0)))
    return counting, batching, max_seq_length


def encode_batch(tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` of ``texts``, int64, ``(batch, longest)``."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([encoding.ids for encoding in encodings], dtype=np.int64),
        "attention_mask": np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64),
        "token_type_ids": np.array([encoding.type_ids for encoding in encodings], dtype=np.int64),
    }


class OnnxPredictor:
    """Runs an exported model with onnxruntime on the CPU.

    Batching (token-sorted) and the predictions table are the torch model's (``mtt_core.predictions``),
    as is reading ``config.json``. The tokenizer is the export's ``tokenizer.json``, read with the
    ``tokenizers`` library: the same ids as the Hugging Face tokenizer, and neither transformers nor
    torch is imported.

    Args:
        directory: A directory written by ``export_onnx`` or ``mtt export``.
        onnx_file: Which graph to load. ``model.int8.onnx`` must carry the int8 metadata its quantiser wrote.
        intra_op_num_threads: Threads onnxruntime uses inside one operator; ``None`` keeps its
            default (one per physical core). Pass ``torch.get_num_threads()`` to compare with the
            torch model fairly, or a small number to share the CPU.

    Raises:
        FileNotFoundError: the directory, ``config.json``, the graph or the tokenizer is missing.
        ValueError: a file differs from the one the export wrote (its digest), or the files do not
            fit together: other outputs, other labels than the graph was exported with, an int8 file
            that is not int8, or a ``max_seq_length`` out of range.
    """

    def __init__(
        self, directory: str | os.PathLike, onnx_file: str = ONNX_FILE, intra_op_num_threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        self.directory = Path(directory).expanduser()
        if not self.directory.is_dir():
            raise FileNotFoundError(f"ONNX model directory not found: {str(self.directory)!r}")
        onnx_path = self.directory / onnx_file
        for path in (onnx_path, self.directory / CONFIG_FILE, self.directory / TOKENIZER_FILE,
                     self.directory / TOKENIZER_CONFIG_FILE):
            if not path.is_file():
                raise FileNotFoundError(f"Missing model file: {str(path)!r}")
        verify_files(self.directory, [CONFIG_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, onnx_file])
        self.config = MultiTaskConfig.from_json(self.directory / CONFIG_FILE)
        options = ort.SessionOptions()
        if intra_op_num_threads is not None:
            if not isinstance(intra_op_num_threads, int) or intra_op_num_threads < 1:
                raise ValueError(f"intra_op_num_threads must be a positive int or None, got {intra_op_num_threads!r}.")
            options.intra_op_num_threads = intra_op_num_threads
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own, non-public error types
            raise ValueError(f"Cannot load ONNX model {str(onnx_path)!r}: {error}") from error
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        """The graph's ``metadata_props``: its labels and, for an int8 graph, how it was made."""
        if onnx_file == INT8_FILE and "int8_method" not in self.metadata:
            raise ValueError(f"{str(onnx_path)!r} is named as the int8 graph but records no int8_method: it was not "
                             "written by the quantiser. Export again with --int8.")
        outputs = {node.name: node.shape for node in self.session.get_outputs()}
        expected = {EMBEDDING_OUTPUT: None, **{logits_output(t): len(labels) for t, labels in self.config.tasks.items()}}
        for name, classes in expected.items():
            if name not in outputs or (classes is not None and outputs[name][-1] != classes):
                raise ValueError(f"{str(onnx_path)!r} has no output {name!r} to match its {CONFIG_FILE} "
                                 f"({classes or 'any'} columns); its outputs are {outputs}.")
        check_saved_labels(self.metadata, self.config, onnx_path, self.directory / CONFIG_FILE)
        self.tokenizer, self._batch_tokenizer, self.max_seq_length = load_tokenizers(
            self.directory, self.config.max_seq_length)

    @property
    def task_names(self) -> list[str]:
        return self.config.task_names

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """One batch as the graph reads it: cut at :attr:`max_seq_length`, padded to the longest text."""
        return encode_batch(self._batch_tokenizer, texts)

    def _run_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # A graph may expect token_type_ids that this tokenizer does not produce: all zeros.
        inputs = {name: batch.get(name, np.zeros_like(batch["input_ids"])).astype(np.int64) for name in self.input_names}
        return dict(zip([node.name for node in self.session.get_outputs()], self.session.run(None, inputs)))

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> pd.DataFrame:
        """The table of ``MultiTaskSentenceTransformer.predict``."""
        texts = check_texts(texts)
        return predictions_table(texts, self.predict_logits(texts, batch_size), self.config.tasks)

    def predict_logits(self, texts: Sequence[str], batch_size: int = 32) -> dict[str, np.ndarray]:
        """``{"embedding": ..., task: logits, ...}`` in input order, like the torch model's."""
        outputs = run_token_sorted(check_texts(texts), self.tokenizer, self.max_seq_length, batch_size,
                                   self._run_batch, self.tokenize)
        return {"embedding": outputs[EMBEDDING_OUTPUT], **{t: outputs[logits_output(t)] for t in self.task_names}}

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised sentence embeddings, ``(len(texts), dim)`` float32, in input order."""
        return self.predict_logits(texts, batch_size)["embedding"]


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Best minus second-best logit per row: small means the model nearly chose another class.

    Args:
        logits: ``(n, classes)`` array, ``classes >= 2``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, classes >= 2), got {logits.shape}.")
    top_two = np.partition(logits, -2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def rerun_mask(logits: Mapping[str, np.ndarray], margin_threshold: float) -> np.ndarray:
    """The cascade's decision rule: re-run a text in fp32 when its top-2 margin is below
    ``margin_threshold`` in any task."""
    return np.logical_or.reduce([top2_margin(task_logits) < margin_threshold for task_logits in logits.values()])


def cascade_curve(
    int8_logits: Mapping[str, np.ndarray],
    fp32_logits: Mapping[str, np.ndarray],
    thresholds: Sequence[float],
    task_rows: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The cascade's trade-off for each threshold, from both graphs' logits of the same texts.

    Args:
        int8_logits: ``{task: (n, classes)}`` from the int8 graph.
        fp32_logits: The same tasks and texts from the fp32 graph (the reference labels).
        thresholds: Margins to evaluate; 0 is plain int8.
        task_rows: Optional ``{task: (n,) bool mask}``: measure that task's agreement on these rows
            only (the texts that carry its label). ``share_rerun`` always counts every row.

    Returns:
        One row per threshold: ``threshold``, ``share_rerun`` and ``agreement_<task>`` (share of
        texts whose cascade label equals the fp32 label).
    """
    tasks = list(fp32_logits)
    if set(int8_logits) != set(tasks):
        raise ValueError(f"int8 tasks {sorted(int8_logits)} differ from fp32 tasks {sorted(tasks)}.")
    for task in tasks:
        if np.shape(int8_logits[task]) != np.shape(fp32_logits[task]):
            raise ValueError(f"Task {task!r}: int8 logits {np.shape(int8_logits[task])} and fp32 logits "
                             f"{np.shape(fp32_logits[task])} differ in shape.")
    masks = {task: np.ones(len(np.asarray(fp32_logits[task])), dtype=bool) for task in tasks}
    for task, mask in (task_rows or {}).items():
        if task not in masks:
            raise ValueError(f"task_rows names unknown task {task!r}; expected one of {tasks}.")
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != masks[task].shape or not mask.any():
            raise ValueError(f"task_rows[{task!r}] must be a boolean mask of shape {masks[task].shape} selecting at "
                             f"least one row, got dtype {mask.dtype} and shape {mask.shape}.")
        masks[task] = mask
    int8_labels = {task: np.asarray(int8_logits[task]).argmax(axis=1) for task in tasks}
    fp32_labels = {task: np.asarray(fp32_logits[task]).argmax(axis=1) for task in tasks}
    rows = []
    for threshold in thresholds:
        rerun = rerun_mask({task: int8_logits[task] for task in tasks}, threshold)
        row = {"threshold": float(threshold), "share_rerun": float(rerun.mean())}
        for task in tasks:
            agree = (int8_labels[task] == fp32_labels[task]) | rerun  # re-run texts take the fp32 label
            row[f"agreement_{task}"] = float(agree[masks[task]].mean())
        rows.append(row)
    return pd.DataFrame(rows)


class CascadePredictor:
    """The int8 graph for every text, the fp32 graph for the uncertain ones; ``OnnxPredictor``'s interface.

    Args:
        directory: An export directory holding both graphs, ``config.json`` and the tokenizer.
        margin_threshold: See :func:`rerun_mask`. 0 is plain int8; a large value is plain fp32
            (slower than either).
        intra_op_num_threads: Passed to both ``OnnxPredictor`` sessions.

    Raises:
        FileNotFoundError: a graph, the config or the tokenizer is missing.
        ValueError: ``margin_threshold`` is negative, or a file is not the one the export wrote.
    """

    def __init__(self, directory: str | os.PathLike, margin_threshold: float = DEFAULT_MARGIN_THRESHOLD,
                 intra_op_num_threads: int | None = None) -> None:
        if isinstance(margin_threshold, bool) or not isinstance(margin_threshold, (int, float)) or not margin_threshold >= 0:
            raise ValueError(f"margin_threshold must be a number >= 0, got {margin_threshold!r}.")
        self.margin_threshold = float(margin_threshold)
        self.int8 = OnnxPredictor(directory, onnx_file=INT8_FILE, intra_op_num_threads=intra_op_num_threads)
        self.fp32 = OnnxPredictor(directory, onnx_file=ONNX_FILE, intra_op_num_threads=intra_op_num_threads)
        self.last_rerun_share: float | None = None
        """Share of the texts of the last ``predict_logits`` call that were re-run in fp32."""
        self.config, self.tokenizer, self.max_seq_length = self.fp32.config, self.fp32.tokenizer, self.fp32.max_seq_length

    @property
    def task_names(self) -> list[str]:
        return self.config.task_names

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
