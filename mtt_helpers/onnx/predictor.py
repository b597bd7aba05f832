"""Runs an export with onnxruntime on the CPU, without torch: ``predict`` returns the torch model's table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtt_helpers.config import CONFIG_FILE, MultiTaskConfig
from mtt_helpers.label_metadata import check_saved_labels
from mtt_helpers.onnx.layout import EMBEDDING_OUTPUT, ONNX_FILE, logits_output
from mtt_helpers.onnx.tokenizer import encode_batch, load_tokenizers
from mtt_helpers.predictions import check_texts, predictions_table, run_token_sorted


class OnnxPredictor:
    """Runs an exported model with onnxruntime on the CPU.

    Batching (token-sorted) and the predictions table are shared with the torch model
    (``mtt_helpers.predictions``), as is reading ``config.json`` (``MultiTaskConfig.from_json``).
    The tokenizer is the export's ``tokenizer.json``, read with the ``tokenizers`` library: the
    same ids as the Hugging Face tokenizer, and neither transformers nor torch is imported.

    Args:
        directory: A directory written by ``export_onnx`` (``config.json``, tokenizer
            files and one or more ``.onnx`` graphs).
        onnx_file: Which graph to load, e.g. ``"model.int8.onnx"``.
        intra_op_num_threads: Threads onnxruntime uses inside one operator (a matrix
            multiplication, say). ``None`` keeps onnxruntime's default, one per physical core;
            pass ``torch.get_num_threads()`` to give it the same threads as the torch model,
            e.g. to compare the two fairly, or a small number to share the CPU with other work.

    Raises:
        FileNotFoundError: the directory, ``config.json``, the graph or the tokenizer is missing.
        ValueError: ``config.json``, the graph or the tokenizer is unreadable, or they do not match:
            other outputs, other labels than the graph was exported with, or a ``max_seq_length``
            above the tokenizer's limit.
    """

    def __init__(
        self, directory: str | os.PathLike, onnx_file: str = ONNX_FILE, intra_op_num_threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        self.directory = Path(directory).expanduser()
        if not self.directory.is_dir():
            raise FileNotFoundError(f"ONNX model directory not found: {str(self.directory)!r}")
        onnx_path = self.directory / onnx_file
        if not onnx_path.is_file():
            raise FileNotFoundError(f"Missing model file: {str(onnx_path)!r}")
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
        """The graph's ``metadata_props``: for an int8 graph, how it was made (``layout.INT8_METADATA``)."""
        outputs = {node.name: node.shape for node in self.session.get_outputs()}
        expected = {EMBEDDING_OUTPUT: None, **{logits_output(t): len(labels) for t, labels in self.config.tasks.items()}}
        for name, classes in expected.items():
            if name not in outputs or (classes is not None and outputs[name][-1] != classes):
                raise ValueError(f"{str(onnx_path)!r} has no output {name!r} to match its {CONFIG_FILE} "
                                 f"({classes or 'any'} columns); its outputs are {outputs}.")
        check_saved_labels(self.session.get_modelmeta().custom_metadata_map, self.config, onnx_path,
                           self.directory / CONFIG_FILE)
        # tokenizer counts tokens (no truncation); the batching copy cuts at the limit and pads.
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
        """The table of ``MultiTaskSentenceTransformer.predict`` (``predictions.predictions_table``)."""
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
