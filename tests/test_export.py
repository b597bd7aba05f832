"""ONNX export: the exported graph must behave like the torch model it came from, and the predictor
reads back only the files the export wrote."""

import json
import shutil

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

# Optional dependencies (the `onnx` extra): skip, rather than error, where they are missing.
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mtt_core.files import MANIFEST_FILE, sha256_of
from mtt_core.model_files import INT8_FILE, ONNX_FILE
from mtt_core.onnx_runtime import OnnxPredictor
from mtt_helpers import MultiTaskSentenceTransformer, set_seed
from mtt_helpers.data import load_bundled
from mtt_helpers.onnx import export_onnx, quantize_dynamic_int8, quantize_int8

LONG_TEXT = " ".join(["The committee discussed budgets, exams and marathon training schedules."] * 40)
"""About 400 words: far beyond the model's 128-token limit, so it must be truncated identically."""

VARIED_TEXTS = [
    "a",
    LONG_TEXT,
    "The striker scored twice in the final minutes.",
    "Stocks fell sharply after the central bank raised interest rates again this quarter.",
    "Café crème brûlée — naïve résumé, très bien!",
    "東京の新しいスマートフォンは高すぎる。",
    "Ελληνικά: το σχολείο άνοιξε ξανά σήμερα.",
    "I love this 😀🎉 new laptop",
    "ok",
    "Antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]


@pytest.fixture(scope="module")
def exported(shared_model, onnx_export):
    """A random-headed model, its export folder, and the folder of the int8 copy: the same one (an int8
    graph is written beside the graph it was made from)."""
    return shared_model, onnx_export, onnx_export


def copy_of(export, tmp_path):
    """A copy of an export folder (its manifest included), to edit."""
    directory = tmp_path / "copy"
    shutil.copytree(export, directory)
    return directory


def record_digest(folder, name):
    """Writes the current sha256 of ``folder/name`` into the manifest, as if the export had written it:
    the checks behind the digest check are reached."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][name] = sha256_of(folder / name)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def fp32(exported):
    return OnnxPredictor(exported[1])


def test_export_writes_a_self_contained_directory(exported):
    model, fp32_dir, int8_dir = exported
    assert int8_dir == fp32_dir  # quantize_int8 writes beside its source
    assert (fp32_dir / "config.json").is_file() and (fp32_dir / "tokenizer_config.json").is_file()
    config = json.loads((fp32_dir / "config.json").read_text())
    assert config["tasks"] == model.config.tasks
    assert config["max_seq_length"] == model.max_seq_length == 128
    session = ort.InferenceSession(str(fp32_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in session.get_outputs()] == ["embedding", "topic_logits", "sentiment_logits"]
    assert (int8_dir / INT8_FILE).stat().st_size < (fp32_dir / ONNX_FILE).stat().st_size / 3


def test_graph_matches_torch_on_a_mixed_length_batch(exported):
    """The raw graph, fed the torch model's own tokens: isolates the export from tokenization."""
    model, fp32_dir, _ = exported
    features = model.tokenize(VARIED_TEXTS)
    assert features["input_ids"].shape[1] == model.max_seq_length  # LONG_TEXT was truncated
    session = ort.InferenceSession(str(fp32_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    embedding, topic, sentiment = session.run(None, {name: features[name].numpy() for name in names})
    with torch.no_grad():
        expected = model(features)
    assert np.abs(embedding - expected["embedding"].numpy()).max() <= 1e-4
    assert np.abs(topic - expected["topic"].numpy()).max() <= 1e-4
    assert np.abs(sentiment - expected["sentiment"].numpy()).max() <= 1e-4


@pytest.mark.parametrize("batch", [1, 7])
def test_graph_has_dynamic_batch_and_sequence(exported, batch):
    model, fp32_dir, _ = exported
    features = model.tokenize(VARIED_TEXTS[2 : 2 + batch])
    session = ort.InferenceSession(str(fp32_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {i.name: features[i.name].numpy() for i in session.get_inputs()})
    assert [o.shape for o in outputs] == [(batch, 384), (batch, 6), (batch, 3)]


def test_predictor_matches_torch(exported, fp32):
    model = exported[0]
    expected = model.predict(VARIED_TEXTS)
    table = fp32.predict(VARIED_TEXTS)
    assert list(table.columns) == list(expected.columns)
    assert table["sentence"].tolist() == VARIED_TEXTS
    assert table["text_class"].tolist() == expected["text_class"].tolist()
    assert table["sentiment"].tolist() == expected["sentiment"].tolist()
    prob_columns = [c for c in table.columns if c.startswith("prob_")]
    assert np.abs(table[prob_columns].to_numpy() - expected[prob_columns].to_numpy()).max() <= 1e-4
    embeddings = fp32.embed(VARIED_TEXTS)
    assert embeddings.shape == (len(VARIED_TEXTS), 384)
    assert np.abs(embeddings - model.embed(VARIED_TEXTS).numpy()).max() <= 1e-4


def test_int8_agrees_with_fp32(exported, fp32):
    int8 = OnnxPredictor(exported[2], onnx_file=INT8_FILE)
    texts = load_bundled("dev")["text"].tolist()[:50]
    reference, quantized = fp32.predict(texts), int8.predict(texts)
    for column in ("text_class", "sentiment"):
        assert (reference[column] == quantized[column]).mean() >= 0.9, column
    cosine = (fp32.embed(texts) * int8.embed(texts)).sum(axis=1)  # rows have unit norm
    assert cosine.mean() >= 0.97


def test_token_sorted_batching_keeps_input_order(fp32):
    texts = load_bundled("dev")["text"].tolist()[:40] + VARIED_TEXTS
    one_by_one = fp32.predict(texts, batch_size=1)
    batched = fp32.predict(texts, batch_size=16)
    assert batched["sentence"].tolist() == texts
    assert batched["text_class"].tolist() == one_by_one["text_class"].tolist()
    assert batched["sentiment"].tolist() == one_by_one["sentiment"].tolist()
    assert np.abs(fp32.embed(texts, batch_size=16) - fp32.embed(texts, batch_size=1)).max() <= 1e-4


def test_predictor_thread_count(exported):
    fp32_dir = exported[1]
    one = OnnxPredictor(fp32_dir, intra_op_num_threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    default = OnnxPredictor(fp32_dir)
    assert default.session.get_session_options().intra_op_num_threads == 0  # 0: onnxruntime's own choice
    assert np.abs(one.embed(VARIED_TEXTS) - default.embed(VARIED_TEXTS)).max() <= 1e-5
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="intra_op_num_threads"):
            OnnxPredictor(fp32_dir, intra_op_num_threads=bad)


def test_predictor_validates_texts(fp32):
    with pytest.raises(TypeError):
        fp32.predict("one string, not a list")
    with pytest.raises(ValueError):
        fp32.predict(["fine", "   "])
    with pytest.raises(ValueError):
        fp32.embed(["fine"], batch_size=0)


def test_missing_and_corrupt_files_give_clear_errors(exported, tmp_path):
    _, fp32_dir, int8_dir = exported
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        OnnxPredictor(tmp_path / "no_such_dir")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxPredictor(fp32_dir, onnx_file="missing.onnx")
    with pytest.raises(FileNotFoundError, match="no_such.onnx"):
        quantize_int8(tmp_path / "no_such.onnx")

    # A folder assembled by hand: no manifest, so nothing in it can be checked.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / ONNX_FILE).write_bytes(b"this is not a protobuf")
    with pytest.raises(FileNotFoundError, match="config.json"):
        OnnxPredictor(bare)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(fp32_dir / name, bare / name)
    with pytest.raises(ValueError, match="has no manifest.json of mtt_helpers"):
        OnnxPredictor(bare)

    # The checks behind the digests: each broken file recorded in the manifest as if the export wrote it.
    broken = copy_of(fp32_dir, tmp_path)
    (broken / ONNX_FILE).write_bytes(b"this is not a protobuf")
    record_digest(broken, ONNX_FILE)
    with pytest.raises(ValueError, match=f"Cannot load ONNX model .*{ONNX_FILE}"):
        OnnxPredictor(broken)
    shutil.copy(int8_dir / INT8_FILE, broken / ONNX_FILE)
    record_digest(broken, ONNX_FILE)
    (broken / "config.json").write_text("{not json")
    record_digest(broken, "config.json")
    with pytest.raises(ValueError, match="config.json"):
        OnnxPredictor(broken)

    # A config that no longer matches the graph (a fourth sentiment label).
    config = json.loads((fp32_dir / "config.json").read_text())
    config["tasks"]["sentiment"].append("mixed")
    (broken / "config.json").write_text(json.dumps(config))
    record_digest(broken, "config.json")
    with pytest.raises(ValueError, match="sentiment_logits"):
        OnnxPredictor(broken)
    # A matching config and graph, but no tokenizer files.
    shutil.copy(fp32_dir / "config.json", broken / "config.json")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        OnnxPredictor(broken)


def test_export_refuses_an_unsupported_pooling(encoder, tmp_path):
    cls_pooling = type(encoder[1])(384, pooling_mode="cls")
    model = MultiTaskSentenceTransformer(SentenceTransformer(modules=[encoder[0], cls_pooling], device="cpu"))
    with pytest.raises(ValueError, match="mean Pooling"):
        export_onnx(model, tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_saved_torch_model_directory(encoder, tmp_path):
    """The export would replace the saved model (and its config.json, which load() needs)."""
    model = MultiTaskSentenceTransformer(encoder)
    model.save(tmp_path, include_encoder=False)
    config_before = (tmp_path / "config.json").read_text()
    for overwrite in (False, True):  # not an earlier export: refused as such, overwrite or not
        with pytest.raises(FileExistsError, match="holds a saved model, not an ONNX export"):
            export_onnx(model, tmp_path, overwrite=overwrite)
    assert (tmp_path / "config.json").read_text() == config_before
    assert not (tmp_path / ONNX_FILE).exists()
    MultiTaskSentenceTransformer.load(tmp_path)


def test_export_writes_a_manifest_and_replaces_only_its_own_folder(shared_model, onnx_export, tmp_path):
    listed = json.loads((onnx_export / "manifest.json").read_text())
    assert listed["kind"] == "onnx" and {ONNX_FILE, "config.json", "tokenizer.json"} <= set(listed["files"])
    # quantize_int8 wrote the int8 graph afterwards, and added it with its digest
    assert listed["files"][INT8_FILE] == sha256_of(onnx_export / INT8_FILE)
    assert all(listed["files"][name] == sha256_of(onnx_export / name) for name in listed["files"])
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="no manifest.json of mtt_helpers.*notes.txt"):
            export_onnx(shared_model, tmp_path, overwrite=overwrite)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    export_onnx(shared_model, tmp_path / "export")
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):  # an earlier export: only with overwrite
        export_onnx(shared_model, tmp_path / "export")


@pytest.mark.parametrize("graph", [ONNX_FILE, INT8_FILE])
def test_predictor_refuses_labels_edited_in_config_json(onnx_export, tmp_path, graph):
    directory = copy_of(onnx_export, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["tasks"]["topic"] = config["tasks"]["topic"][::-1]  # same count: the graph still fits
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json' has sha256 .* it was written with"):
        OnnxPredictor(directory, onnx_file=graph)
    record_digest(directory, "config.json")
    with pytest.raises(ValueError, match=rf"names other labels than .*{graph}.*task 'topic'"):
        OnnxPredictor(directory, onnx_file=graph)


def test_export_keeps_the_models_token_limit(encoder, tmp_path):
    """A model set to 300 tokens is exported and run at 300: not the config's default 128, and not the
    256 sentence-transformers saves as the tokenizer's limit (the encoder reads up to 512)."""
    model = MultiTaskSentenceTransformer(encoder)
    model.set_max_seq_length(300)
    model.save(tmp_path / "model", include_encoder=False)
    reloaded = MultiTaskSentenceTransformer.load(tmp_path / "model", device="cpu")
    assert reloaded.max_seq_length == 300
    export_onnx(reloaded, tmp_path / "onnx")
    predictor = OnnxPredictor(tmp_path / "onnx")
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["max_seq_length"] == 300
    assert predictor.max_seq_length == 300 and len(predictor.tokenizer.encode(LONG_TEXT).ids) > 300
    torch_logits = reloaded.predict_logits([LONG_TEXT])["topic"].numpy()
    assert np.abs(predictor.predict_logits([LONG_TEXT])["topic"] - torch_logits).max() < 1e-4
    for value, message in [(2000, "from 3 .* to 512, got 2000"), (1, "from 3 .*got 1")]:
        (tmp_path / "onnx" / "config.json").write_text(json.dumps(
            {**json.loads((tmp_path / "onnx" / "config.json").read_text()), "max_seq_length": value}))
        record_digest(tmp_path / "onnx", "config.json")
        with pytest.raises(ValueError, match=f"max_seq_length must be an integer {message}"):
            OnnxPredictor(tmp_path / "onnx")


def test_quantize_writes_only_beside_its_source(exported, encoder, tmp_path):
    """An int8 graph belongs to its export: elsewhere (a saved torch model's folder included) is refused."""
    MultiTaskSentenceTransformer(encoder).save(tmp_path / "model", include_encoder=False)
    for quantize in (quantize_int8, quantize_dynamic_int8):
        with pytest.raises(ValueError, match="an int8 graph is written into its export's folder"):
            quantize(exported[1] / ONNX_FILE, tmp_path / "model" / INT8_FILE)
    assert not (tmp_path / "model" / INT8_FILE).exists()


@pytest.mark.parametrize("content", ["[]", "3"])
def test_predictor_config_that_is_not_an_object(exported, tmp_path, content):
    directory = copy_of(exported[1], tmp_path)
    (directory / "config.json").write_text(content)
    record_digest(directory, "config.json")
    with pytest.raises(ValueError, match=r"Unreadable model config .*config.json.*expected a JSON object"):
        OnnxPredictor(directory)


def test_predictor_tokenizes_exactly_like_the_hugging_face_tokenizer(exported, fp32):
    """The ``tokenizers`` pipeline read from tokenizer.json, cut at the limit and padded to the longest
    text, gives the ids and masks of ``AutoTokenizer(..., padding=True, truncation=True, max_length=...)``."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(exported[1]), local_files_only=True)
    for texts in (VARIED_TEXTS, VARIED_TEXTS[2:5], ["ok"]):
        expected = reference(texts, padding=True, truncation=True, max_length=fp32.max_seq_length, return_tensors="np")
        ours = fp32.tokenize(texts)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert np.array_equal(ours[name], expected[name]), name
    assert fp32.tokenize(VARIED_TEXTS)["input_ids"].shape[1] == fp32.max_seq_length == 128  # LONG_TEXT was cut
    # The counting copy does not cut: the service and the truncation warning see the full length.
    counts = [len(ids) for ids in reference(VARIED_TEXTS, truncation=False, verbose=False)["input_ids"]]
    assert [len(encoding.ids) for encoding in fp32.tokenizer.encode_batch(VARIED_TEXTS)] == counts
    assert max(counts) > 128


TORCH_FREE = """
import sys
from mtt.backends import load_predictor
from mtt_core.onnx_runtime import CascadePredictor, OnnxPredictor
directory = sys.argv[1]
tables = [OnnxPredictor(directory).predict(["What a goal!", "Shares fell."]),
          CascadePredictor(directory).predict(["What a goal!"]),
          load_predictor(directory, "onnx", "int8").predict(["Flu jabs are free."])]
print(*(table["text_class"].tolist() for table in tables))
print("torch imported:", "torch" in sys.modules, "transformers imported:", "transformers" in sys.modules,
      "mtt_helpers imported:", "mtt_helpers" in sys.modules)
"""


def test_onnx_inference_never_imports_torch(onnx_export):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", TORCH_FREE, str(onnx_export)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ("torch imported: False transformers imported: False "
                                              "mtt_helpers imported: False")


@pytest.fixture(scope="module")
def other_export(encoder, tmp_path_factory):
    """Another model (other random heads, the same labels and shapes), exported with an int8 copy."""
    set_seed(1)
    directory = tmp_path_factory.mktemp("other") / "export"
    quantize_dynamic_int8(export_onnx(MultiTaskSentenceTransformer(encoder), directory))
    return directory


@pytest.mark.parametrize("graph", [ONNX_FILE, INT8_FILE])
def test_a_graph_copied_from_another_export_is_refused(onnx_export, other_export, tmp_path, graph):
    """Same labels, same outputs: without the digest it would run, giving the other model's predictions."""
    directory = copy_of(onnx_export, tmp_path)
    shutil.copy(other_export / graph, directory / graph)
    with pytest.raises(ValueError, match=rf"{graph}' has sha256 [0-9a-f]{{64}}, not the [0-9a-f]{{64}} it was written "
                                         "with: it was changed or replaced since"):
        OnnxPredictor(directory, onnx_file=graph)
    OnnxPredictor(directory, onnx_file=INT8_FILE if graph == ONNX_FILE else ONNX_FILE)  # the other graph is fine


def test_an_fp32_graph_saved_as_the_int8_graph_is_refused(onnx_export, tmp_path):
    directory = copy_of(onnx_export, tmp_path)
    shutil.copy(directory / ONNX_FILE, directory / INT8_FILE)
    with pytest.raises(ValueError, match=f"{INT8_FILE}' has sha256"):
        OnnxPredictor(directory, onnx_file=INT8_FILE)
    record_digest(directory, INT8_FILE)  # even recorded as written there, it does not say it is int8
    with pytest.raises(ValueError, match="is named as the int8 graph but records no int8_method"):
        OnnxPredictor(directory, onnx_file=INT8_FILE)


def test_one_flipped_bit_in_the_tokenizer_is_refused(onnx_export, tmp_path):
    directory = copy_of(onnx_export, tmp_path)
    tokenizer = bytearray((directory / "tokenizer.json").read_bytes())
    tokenizer[tokenizer.index(b'"[UNK]"') + 2] ^= 0x20  # [UNK] -> [uNK]: still valid JSON
    (directory / "tokenizer.json").write_bytes(bytes(tokenizer))
    with pytest.raises(ValueError, match="tokenizer.json' has sha256"):
        OnnxPredictor(directory)
