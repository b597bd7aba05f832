"""The int8 -> fp32 cascade: margins, the trade-off curve, the predictor and its command-line options."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mtt.backends import load_predictor
from mtt.cli import main as mtt
from mtt_core.model_files import INT8_FILE
from mtt_core.onnx_runtime import CascadePredictor, OnnxPredictor, cascade_curve, rerun_mask, top2_margin
from mtt_helpers.data import load_bundled


def test_top2_margin_is_best_minus_second_best():
    logits = np.array([[1.0, 3.0, 2.5], [0.0, -1.0, -4.0], [2.0, 2.0, 0.0]])
    assert np.allclose(top2_margin(logits), [0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        top2_margin(np.array([1.0, 2.0]))


def test_rerun_mask_takes_any_task():
    logits = {"a": np.array([[0.0, 1.0], [0.0, 0.05], [0.0, 1.0]]), "b": np.array([[0.0, 1.0], [0.0, 1.0], [0.9, 1.0]])}
    assert rerun_mask(logits, 0.2).tolist() == [False, True, True]


def test_cascade_curve_counts_reruns_and_agreement():
    fp32 = {"a": np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])}
    # Row 1 flips with a small margin (0.1), row 2 flips with a large one (2.0), rows 0 and 3 agree.
    int8 = {"a": np.array([[0.0, 1.0], [0.0, 0.1], [2.0, 0.0], [0.0, 0.5]])}
    curve = cascade_curve(int8, fp32, [0.0, 0.2, 0.6, 3.0])
    assert curve["share_rerun"].tolist() == [0.0, 0.25, 0.5, 1.0]
    assert curve["agreement_a"].tolist() == [0.5, 0.75, 0.75, 1.0]
    with pytest.raises(ValueError, match="differ"):
        cascade_curve({"b": int8["a"]}, fp32, [0.1])
    with pytest.raises(ValueError, match="shape"):
        cascade_curve({"a": int8["a"][:3]}, fp32, [0.1])



def test_cascade_curve_measures_each_task_on_its_own_rows():
    # Rows 0-1 carry a topic label, rows 2-3 a sentiment label (headlines and tweets mixed).
    fp32 = {"topic": np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]),
            "sentiment": np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])}
    # int8 flips topic on row 2 and sentiment on row 0, both rows of the *other* task, confidently.
    int8 = {"topic": np.array([[0.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.0]]),
            "sentiment": np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])}
    rows = {"topic": np.array([True, True, False, False]), "sentiment": np.array([False, False, True, True])}
    curve = cascade_curve(int8, fp32, [0.0], task_rows=rows)
    assert curve[["agreement_topic", "agreement_sentiment"]].iloc[0].tolist() == [1.0, 1.0]
    assert cascade_curve(int8, fp32, [0.0])["agreement_topic"].iloc[0] == 0.75  # every row without task_rows
    only_topic = cascade_curve(int8, fp32, [0.0], task_rows={"topic": rows["topic"]})
    assert only_topic[["agreement_topic", "agreement_sentiment"]].iloc[0].tolist() == [1.0, 0.75]
    with pytest.raises(ValueError, match="unknown task 'style'"):
        cascade_curve(int8, fp32, [0.0], task_rows={"style": rows["topic"]})
    with pytest.raises(ValueError, match="boolean mask"):
        cascade_curve(int8, fp32, [0.0], task_rows={"topic": np.array([1, 1, 0, 0])})
    with pytest.raises(ValueError, match="boolean mask"):
        cascade_curve(int8, fp32, [0.0], task_rows={"topic": np.zeros(4, dtype=bool)})


def predict_main(argv):
    """``mtt predict *argv``."""
    mtt(["predict", *argv])


@pytest.fixture(scope="module")
def texts():
    return load_bundled()["text"].tolist()[:48]


@pytest.fixture(scope="module")
def reference(onnx_export, texts):
    """Logits of each graph alone, and the int8 margins."""
    fp32 = OnnxPredictor(onnx_export).predict_logits(texts)
    int8 = OnnxPredictor(onnx_export, onnx_file=INT8_FILE).predict_logits(texts)
    margins = np.minimum(top2_margin(int8["topic"]), top2_margin(int8["sentiment"]))
    return fp32, int8, margins


def test_threshold_zero_is_plain_int8_and_a_huge_one_plain_fp32(onnx_export, texts, reference):
    fp32, int8, _ = reference
    cascade = CascadePredictor(onnx_export, margin_threshold=0.0)
    assert np.array_equal(cascade.predict_logits(texts)["topic"], int8["topic"]) and cascade.last_rerun_share == 0
    cascade = CascadePredictor(onnx_export, margin_threshold=1e9)
    got = cascade.predict_logits(texts)
    assert cascade.last_rerun_share == 1
    for name in ("embedding", "topic", "sentiment"):
        assert np.abs(got[name] - fp32[name]).max() < 1e-4


def test_uncertain_rows_come_from_fp32_and_the_rest_from_int8(onnx_export, texts, reference):
    fp32, int8, margins = reference
    threshold = float(np.median(margins))
    cascade = CascadePredictor(onnx_export, margin_threshold=threshold)
    got = cascade.predict_logits(texts)
    rerun = margins < threshold
    assert 0 < rerun.sum() < len(texts) and cascade.last_rerun_share == rerun.mean()
    for task in ("topic", "sentiment"):
        expected = np.where(rerun[:, None], fp32[task], int8[task])
        assert np.abs(got[task] - expected).max() < 1e-4
    assert np.array_equal(got["topic"][~rerun], int8["topic"][~rerun])  # untouched rows are int8's exactly

    table = cascade.predict(texts)
    assert list(table.columns) == list(OnnxPredictor(onnx_export).predict(texts[:2]).columns)
    labels = cascade.config.tasks["topic"]
    assert table["text_class"].tolist() == [labels[i] for i in got["topic"].argmax(axis=1)]


def test_a_negative_threshold_is_refused(onnx_export):
    with pytest.raises(ValueError, match="margin_threshold"):
        CascadePredictor(onnx_export, margin_threshold=-0.1)


def test_load_predictor_maps_precision_to_graphs(onnx_export, texts, reference):
    _, int8, _ = reference
    assert isinstance(load_predictor(onnx_export, "onnx", "int8-safe", margin_threshold=0.5), CascadePredictor)
    int8_model = load_predictor(onnx_export, "onnx", "int8")
    assert np.array_equal(int8_model.predict_logits(texts)["topic"], int8["topic"])
    with pytest.raises(ValueError, match="need --backend onnx"):
        load_predictor(onnx_export, "torch", "int8")
    with pytest.raises(ValueError, match="only applies"):
        load_predictor(onnx_export, "onnx", "int8", margin_threshold=0.2)


def test_predict_cli_precision_options(onnx_export, texts, tmp_path, capsys):
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    args = [str(onnx_export), str(tmp_path / "in.csv"), "--backend", "onnx"]
    predict_main([*args, "--precision", "int8-safe", "--cascade-margin", "0.4", "-o", str(tmp_path / "safe.csv")])
    expected = CascadePredictor(onnx_export, margin_threshold=0.4).predict(texts)
    assert pd.read_csv(tmp_path / "safe.csv")["text_class"].tolist() == expected["text_class"].tolist()
    predict_main([*args, "--precision", "int8", "-o", str(tmp_path / "int8.csv")])
    expected = OnnxPredictor(onnx_export, onnx_file=INT8_FILE).predict(texts)
    assert pd.read_csv(tmp_path / "int8.csv")["sentiment"].tolist() == expected["sentiment"].tolist()
    with pytest.raises(SystemExit) as exit_info:
        predict_main([str(onnx_export), str(tmp_path / "in.csv"), "--precision", "int8", "-o", str(tmp_path / "x.csv")])
    assert exit_info.value.code == 2 and "need --backend onnx" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
