"""Static int8 quantisation: calibration texts, where the graph is int8, what it records, where it is
written (beside its source, added to the export's manifest), and bad input."""

import shutil

import onnx
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")

from mtt_core.files import read_manifest, sha256_of, verify_files
from mtt_core.model_files import INT8_FILE, INT8_METADATA, ONNX_FILE
from mtt_core.onnx_runtime import OnnxPredictor
from mtt_helpers.data import load_bundled
from mtt_helpers.onnx import (
    QUANTISED_OP_TYPES, bundled_calibration_texts, csv_calibration_texts, quantize_dynamic_int8, quantize_int8,
)


def export_copy(onnx_export, folder):
    """A copy of the shared export to quantise again (its int8 graph is replaced in the copy only)."""
    shutil.copytree(onnx_export, folder)
    return folder


def test_the_int8_graph_records_how_it_was_made(onnx_export):
    """``onnx_export``'s int8 graph was made with the defaults: MinMax, per-channel, the bundled dataset."""
    int8 = OnnxPredictor(onnx_export, onnx_file=INT8_FILE)
    metadata = {key: int8.metadata[key] for key in INT8_METADATA}
    assert metadata["int8_method"].startswith("static QDQ")
    assert "minmax calibration" in metadata["int8_method"] and "per-channel" in metadata["int8_method"]
    assert metadata["int8_calibration_source"] == "bundled dataset (multitask_sentences.csv)"
    assert metadata["int8_calibration_texts"] == str(len(load_bundled()))
    fp32 = OnnxPredictor(onnx_export)
    for ours, theirs in ((int8.session.get_inputs(), fp32.session.get_inputs()),
                         (int8.session.get_outputs(), fp32.session.get_outputs())):
        assert [(node.name, node.type, node.shape) for node in ours] == [(node.name, node.type, node.shape) for node in theirs]


def test_only_the_weight_products_read_rounded_activations(onnx_export):
    """LayerNorm outputs also feed the residual additions: those must read the fp32 tensor."""
    graph = onnx.load(str(onnx_export / INT8_FILE)).graph
    quantised = {node.output[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    rounded = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in quantised}
    readers = {node.op_type for node in graph.node for name in node.input if name in rounded}
    assert rounded and readers <= set(QUANTISED_OP_TYPES)
    assert not [node for node in graph.node if node.op_type == "DynamicQuantizeLinear"]
    products = [node for node in graph.node if node.op_type == "MatMul" and any(name in rounded for name in node.input)]
    assert len(products) == 6 * 6  # query, key, value, attention output, intermediate, output in 6 layers


def test_calibration_from_a_list_or_a_csv_is_recorded(onnx_export, tmp_path):
    texts = load_bundled("train")["text"].tolist()[:24]
    written = quantize_int8(export_copy(onnx_export, tmp_path / "list") / ONNX_FILE, calibration=texts,
                            method="percentile", per_channel=False)
    assert written == tmp_path / "list" / INT8_FILE  # beside its source
    assert read_manifest(tmp_path / "list")["files"][INT8_FILE] == sha256_of(written)  # the new graph's digest
    metadata = OnnxPredictor(tmp_path / "list", onnx_file=INT8_FILE).metadata
    assert metadata["int8_calibration_source"] == "texts passed to quantize_int8"
    assert metadata["int8_calibration_texts"] == "24"
    assert "percentile calibration, per-tensor" in metadata["int8_method"]

    pd.DataFrame({"id": range(4), "text": ["Goal!", " ", "Rates rose.", "Flu season."]}).to_csv(tmp_path / "c.csv", index=False)
    calibration = csv_calibration_texts(tmp_path / "c.csv")
    assert calibration.texts == ["Goal!", "Rates rose.", "Flu season."] and calibration.source == str(tmp_path / "c.csv")
    quantize_int8(export_copy(onnx_export, tmp_path / "csv") / ONNX_FILE, calibration=calibration)
    metadata = OnnxPredictor(tmp_path / "csv", onnx_file=INT8_FILE).metadata
    assert (metadata["int8_calibration_source"], metadata["int8_calibration_texts"]) == (str(tmp_path / "c.csv"), "3")


def test_the_default_calibration_is_the_whole_bundled_dataset():
    calibration = bundled_calibration_texts()
    assert calibration.texts == load_bundled()["text"].tolist()
    assert "bundled dataset" in calibration.source


def test_dynamic_quantisation_is_recorded_as_such(onnx_export, tmp_path):
    quantize_dynamic_int8(export_copy(onnx_export, tmp_path / "dynamic") / ONNX_FILE)
    verify_files(tmp_path / "dynamic")
    metadata = OnnxPredictor(tmp_path / "dynamic", onnx_file=INT8_FILE).metadata
    assert metadata["int8_method"].startswith("dynamic") and "int8_calibration_source" not in metadata


@pytest.mark.parametrize("calibration, error, message", [
    ("one string", TypeError, "one string"),
    ([], ValueError, "empty"),
    (["fine", "  "], ValueError, r"index \[1\]"),
    (["fine", 3], ValueError, r"index \[1\]"),
])
def test_bad_calibration_texts_are_refused_before_any_work(onnx_export, tmp_path, calibration, error, message):
    export = export_copy(onnx_export, tmp_path / "export")
    with pytest.raises(error, match=message):
        quantize_int8(export / ONNX_FILE, calibration=calibration)
    verify_files(export)  # the int8 graph there is still the one the manifest lists


def test_bad_arguments_are_refused_with_clear_errors(onnx_export, tmp_path):
    with pytest.raises(ValueError, match="method must be one of"):
        quantize_int8(onnx_export / ONNX_FILE, calibration=["ok"], method="kl")
    with pytest.raises(FileNotFoundError, match="no_such.onnx"):
        quantize_int8(tmp_path / "no_such.onnx", calibration=["ok"])
    with pytest.raises(ValueError, match="an int8 graph is written into its export's folder"):
        quantize_int8(onnx_export / ONNX_FILE, tmp_path / INT8_FILE, ["ok"])
    (tmp_path / "no_text.csv").write_text("sentence\nGoal!\n")
    with pytest.raises(ValueError, match="no 'text' column"):
        csv_calibration_texts(tmp_path / "no_text.csv")
    (tmp_path / "blank.csv").write_text('text\n" "\n')
    with pytest.raises(ValueError, match="no non-empty text"):
        csv_calibration_texts(tmp_path / "blank.csv")
    with pytest.raises(FileNotFoundError):
        csv_calibration_texts(tmp_path / "missing.csv")
    assert not (tmp_path / INT8_FILE).exists()
