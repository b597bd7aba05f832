"""``mtt export``: a self-contained ONNX directory, or a clear error and nothing written."""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys

import pandas as pd
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import mtt_helpers.onnx
from mtt.cli import main as mtt
from mtt_core.files import verify_files
from mtt_core.model_files import INT8_FILE, ONNX_FILE
from mtt_core.onnx_runtime import OnnxPredictor
from mtt_helpers import MultiTaskSentenceTransformer
from mtt_helpers.data import load_bundled

TEXTS = ["Shares fell 4% after the earnings call.", "What a goal, what a match!", "Flu jabs, now at the pharmacy."]


def main(argv):
    """``mtt export *argv``."""
    mtt(["export", *argv])


@pytest.fixture(scope="module")
def calibration_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "texts.csv"
    pd.DataFrame({"text": TEXTS * 4}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def exported(saved_model, calibration_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    main([str(saved_model), str(out), "--int8", "--calibration-csv", str(calibration_csv)])
    return out


def siblings(path):
    """Everything beside ``path`` in its parent: a failed or finished export leaves no temp dir."""
    return sorted(p.name for p in path.parent.iterdir())


def test_help():
    result = subprocess.run([sys.executable, "-m", "mtt", "export", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage" in result.stdout and "--int8" in result.stdout
    # The default calibration set, named with its size.
    assert f"the {len(load_bundled()):,} sentences of the" in " ".join(result.stdout.split())


def test_the_int8_graph_names_its_calibration_csv(exported, calibration_csv):
    metadata = OnnxPredictor(exported, onnx_file=INT8_FILE).metadata
    assert metadata["int8_calibration_source"] == str(calibration_csv)
    assert metadata["int8_calibration_texts"] == str(len(TEXTS) * 4)


def test_a_bad_calibration_csv_fails_before_the_model_loads(saved_model, tmp_path, capsys):
    (tmp_path / "no_text.csv").write_text("sentence\nGoal!\n")
    for csv, message in ((tmp_path / "missing.csv", "not found"), (tmp_path / "no_text.csv", "no 'text' column")):
        err = run_failing([saved_model, tmp_path / "out", "--int8", "--calibration-csv", csv], capsys)
        assert "--calibration-csv" in err and message in err
    err = run_failing([saved_model, tmp_path / "out", "--calibration-csv", tmp_path / "no_text.csv"], capsys)
    assert "add --int8" in err
    assert not (tmp_path / "out").exists()


def test_export_writes_a_directory_that_predict_runs(saved_model, exported, tmp_path):
    names = {p.name for p in exported.iterdir()}
    assert {ONNX_FILE, INT8_FILE, "config.json", "tokenizer_config.json"} <= names
    assert siblings(exported) == ["onnx"]  # the temporary directory was renamed, not left behind
    umask = os.umask(0); os.umask(umask)
    assert stat.S_IMODE(exported.stat().st_mode) == 0o777 & ~umask  # ordinary permissions, not mkdtemp's 0700
    expected = MultiTaskSentenceTransformer.load(saved_model).predict(TEXTS)
    onnx_table = OnnxPredictor(exported).predict(TEXTS)
    assert onnx_table["text_class"].tolist() == expected["text_class"].tolist()
    assert abs(onnx_table["prob_topic_sports"] - expected["prob_topic_sports"]).max() < 1e-4

    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    result = subprocess.run(
        [sys.executable, "-m", "mtt", "predict", str(exported), str(tmp_path / "in.csv"),
         "--backend", "onnx", "--precision", "int8", "-o", str(tmp_path / "out.csv")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(tmp_path / "out.csv")["text"].tolist() == TEXTS


def test_without_int8_only_the_fp32_graph_is_written(saved_model, tmp_path):
    main([str(saved_model), str(tmp_path / "fp32")])
    assert (tmp_path / "fp32" / ONNX_FILE).is_file() and not (tmp_path / "fp32" / INT8_FILE).exists()


def test_overwrite_replaces_an_earlier_export(saved_model, tmp_path):
    out = tmp_path / "onnx"
    main([str(saved_model), str(out), "--int8"])
    assert json.loads((out / "manifest.json").read_text())["kind"] == "onnx"
    assert {ONNX_FILE, INT8_FILE, "config.json"} <= set(json.loads((out / "manifest.json").read_text())["files"])
    main([str(saved_model), str(out), "--overwrite"])  # only fp32 this time: the int8 graph goes too
    assert (out / ONNX_FILE).stat().st_size > 1000 and not (out / INT8_FILE).exists()
    assert siblings(out) == ["onnx"]


def run_failing(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_folder_that_is_not_a_saved_model_fails_clearly(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = run_failing([tmp_path / "empty", tmp_path / "out"], capsys)
    assert "is not a saved model" in err and "heads.safetensors" in err
    err = run_failing([tmp_path / "missing", tmp_path / "out"], capsys)
    assert "model directory not found" in err
    assert not (tmp_path / "out").exists() and siblings(tmp_path / "out") == ["empty"]


def test_an_unreadable_saved_model_fails_clearly(saved_model, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "heads.safetensors").write_bytes(b"\0" * 16)
    err = run_failing([broken, tmp_path / "out"], capsys)
    assert "cannot load the model" in err and "has no manifest.json of mtt_helpers" in err
    assert siblings(broken) == ["broken"]
    edited = tmp_path / "edited"
    shutil.copytree(saved_model, edited)
    (edited / "config.json").write_text("{not json")
    err = run_failing([edited, tmp_path / "out"], capsys)
    assert "cannot load the model" in err and "config.json' has sha256" in err
    assert not (tmp_path / "out").exists()


def test_an_existing_out_dir_is_refused_without_overwrite(saved_model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    err = run_failing([saved_model, out], capsys)
    assert "already exists" in err and "--overwrite" in err
    # --overwrite replaces only an earlier ONNX export: this directory is something else.
    err = run_failing([saved_model, out, "--overwrite"], capsys)
    assert "no manifest.json of mtt_helpers" in err and "keep.txt" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and siblings(out) == ["out"]


def test_overwrite_never_removes_what_an_export_did_not_write(saved_model, tmp_path, capsys):
    """A folder that merely contains config.json and model.onnx, or an export the user added to, stays."""
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in ("config.json", ONNX_FILE, "results.csv"):
        (fake / name).write_text("the user's")
    assert "no manifest.json" in run_failing([saved_model, fake, "--overwrite"], capsys)
    out = tmp_path / "onnx"
    main([str(saved_model), str(out)])
    (out / "notes.md").write_text("the user's")
    err = run_failing([saved_model, out, "--overwrite"], capsys)
    assert "notes.md" in err and "1 item(s)" in err
    assert (out / "notes.md").read_text() == "the user's" and (fake / "results.csv").read_text() == "the user's"


def test_a_symlinked_out_dir_is_refused(saved_model, tmp_path, capsys):
    main([str(saved_model), str(tmp_path / "real")])
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert "symbolic link" in run_failing([saved_model, tmp_path / "link", "--overwrite"], capsys)
    assert (tmp_path / "real" / ONNX_FILE).is_file()


def test_out_dir_equal_to_or_inside_model_dir_is_refused(saved_model, capsys):
    before = sorted(p.name for p in saved_model.iterdir())
    err = run_failing([saved_model, saved_model, "--overwrite"], capsys)
    assert f"OUT_DIR {saved_model} is MODEL_DIR ({saved_model}), which this command reads" in err
    err = run_failing([saved_model, saved_model / "onnx"], capsys)
    assert f"OUT_DIR {saved_model / 'onnx'} lies inside MODEL_DIR ({saved_model}), which this command reads" in err
    assert sorted(p.name for p in saved_model.iterdir()) == before


def test_a_model_inside_out_dir_is_never_deleted(shared_model, saved_model, tmp_path, capsys):
    """``mtt export OUT/model OUT --overwrite`` would delete the model it was asked to export."""
    out = tmp_path / "onnx"
    main([str(saved_model), str(out)])
    shared_model.save(out / "model", include_encoder=False)  # the model now lies inside OUT
    err = run_failing([out / "model", out, "--overwrite"], capsys)
    assert f"OUT_DIR {out} holds MODEL_DIR ({out / 'model'}), which this command reads" in err
    assert MultiTaskSentenceTransformer.load(out / "model") is not None


IMPORTS = """
import sys
from mtt.cli import main
try:
    main(sys.argv[1:])
finally:
    print("IMPORTED", *sorted(name for name in ("torch", "sentence_transformers", "onnx", "onnxruntime")
                               if name in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("opset", ["99", "13", "24"])
def test_an_opset_out_of_range_is_refused_before_anything_loads(saved_model, tmp_path, opset):
    result = subprocess.run([sys.executable, "-c", IMPORTS, "export", str(saved_model), str(tmp_path / "out"),
                             "--opset", opset], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: --opset must be from 14 to 23, got {opset}", "IMPORTED"]
    assert not (tmp_path / "out").exists()


def test_a_full_disk_during_export_is_one_line_and_keeps_the_earlier_export(saved_model, tmp_path, capsys,
                                                                            monkeypatch):
    out = tmp_path / "onnx"
    main([str(saved_model), str(out)])
    capsys.readouterr()
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())

    def full(model, path, opset=17):
        path.write_bytes(b"half a graph")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mtt_helpers.onnx, "write_export_files", full)
    err = run_failing([saved_model, out, "--overwrite"], capsys)
    assert err == f"error: OUT_DIR {out}: cannot write {out}: No space left on device\n"
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
    verify_files(out)
    assert siblings(out) == ["onnx"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_appears_at_out_dir_during_the_export_is_left_alone(saved_model, tmp_path, capsys,
                                                                         monkeypatch, overwrite):
    """OUT_DIR did not exist when the command started; a folder created there meanwhile (another run, the
    user) is never replaced without --overwrite, and with it only if it is an earlier export of ours."""
    out = tmp_path / "onnx"
    real = mtt_helpers.onnx.write_export_files

    def slow(model, path, opset=17):
        real(model, path, opset)
        out.mkdir()
        (out / "results.csv").write_text("the user's")

    monkeypatch.setattr(mtt_helpers.onnx, "write_export_files", slow)
    err = run_failing([saved_model, out] + (["--overwrite"] if overwrite else []), capsys)
    assert err.startswith(f"error: cannot write OUT_DIR {out}: ") and err.count("\n") == 1
    assert ("has no manifest.json of mtt_helpers" if overwrite else "appeared while this was written") in err
    assert [p.name for p in out.iterdir()] == ["results.csv"] and (out / "results.csv").read_text() == "the user's"
    assert siblings(out) == ["onnx"]
