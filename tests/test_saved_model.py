"""What a saved model carries and checks on load: every file's digest, its labels (in the weights'
metadata), finite weights, range-checked config values, its token limit, and the training settings it
was made with."""

import json
import shutil

import pytest
import torch

from mtt_core.files import MANIFEST_FILE, sha256_of
from mtt_core.predictions import predictions_table
from mtt_helpers import MultiTaskConfig, MultiTaskSentenceTransformer
from mtt_helpers.training import TrainConfig, recipe_config

TEXTS = ["The striker scored twice in the derby.", "Shares fell 4% after the earnings call."]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, shared_model):
    directory = tmp_path_factory.mktemp("checked") / "model"
    shared_model.save(directory, include_encoder=False)
    return directory


def record_digest(folder, name):
    """Writes the current sha256 of ``folder/name`` into the folder's manifest, as if the edit had been saved."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][name] = sha256_of(folder / name)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def edited_copy(saved, tmp_path, record=True, **changes):
    """A copy of the saved model whose config.json has ``changes``; with ``record``, the manifest records
    the edited file's digest, so the checks behind the digest check are reached."""
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **changes}))
    if record:
        record_digest(copy, "config.json")
    return copy


@pytest.mark.parametrize("edit", ["reversed", "renamed"])
def test_labels_edited_in_config_json_are_refused(saved, tmp_path, edit):
    """Same number of labels, so the weights still fit: only the saved labels can tell."""
    tasks = json.loads((saved / "config.json").read_text())["tasks"]
    sentiment = tasks["sentiment"][::-1] if edit == "reversed" else ["bad", "meh", "good"]
    copy = edited_copy(saved, tmp_path, tasks={**tasks, "sentiment": sentiment})
    with pytest.raises(ValueError, match=r"names other labels than .*heads.safetensors.*task 'sentiment': config.json "
                                         r"has \[.*\], the weights \['negative', 'neutral', 'positive'\]"):
        MultiTaskSentenceTransformer.load(copy, device="cpu")


@pytest.mark.parametrize("key, value, message", [
    ("hidden_dim", "abc", "hidden_dim must be a positive integer, got 'abc'"),
    ("hidden_dim", -5, "hidden_dim must be a positive integer, got -5"),
    ("dropout", 2000, r"dropout must be a number in \[0, 1\), got 2000"),
    ("max_seq_length", 0, r"max_seq_length must be an integer from 3 \(two special tokens and one of text\) .*got 0"),
    ("max_seq_length", 1, r"max_seq_length must be an integer from 3 .*got 1"),  # [CLS] [SEP] and no text
    ("max_seq_length", "abc", "max_seq_length must be an integer from 3 .*got 'abc'"),
    ("max_seq_length", 2000, "max_seq_length must be an integer from 3 .* to 512, got 2000"),
    ("tasks", {"topic": ["a", "a"], "sentiment": ["x", "y", "z"]}, "task 'topic' has duplicate labels"),
    ("encoder_saved", "yes", "encoder_saved must be true or false, got 'yes'"),
])
def test_bad_config_values_give_one_clear_error_naming_file_key_and_value(saved, tmp_path, key, value, message):
    copy = edited_copy(saved, tmp_path, **{key: value})
    with pytest.raises(ValueError, match=rf"model config '.*copy/config.json': {message}"):
        MultiTaskSentenceTransformer.load(copy, device="cpu")


def test_max_seq_length_is_checked_against_the_encoder_when_it_loads(encoder):
    with pytest.raises(ValueError, match="from 3 .* to 512"):
        MultiTaskSentenceTransformer(encoder, MultiTaskConfig(max_seq_length=513))
    with pytest.raises(ValueError, match="from 3 .*got 2"):
        MultiTaskConfig(max_seq_length=2)
    limit = encoder.max_seq_length
    model = MultiTaskSentenceTransformer(encoder, MultiTaskConfig(max_seq_length=512))
    assert model.max_seq_length == model.config.max_seq_length == 512
    assert encoder.max_seq_length == limit  # the model's own limit; the shared encoder is left as it was
    with pytest.raises(ValueError, match="got 0"):
        model.set_max_seq_length(0)
    with pytest.raises(ValueError, match="got 2"):
        model.set_max_seq_length(2)
    model.set_max_seq_length(3)
    assert model.max_seq_length == 3 and len(model.tokenize(["a long sentence of several words"])["input_ids"][0]) == 3


def test_training_args_are_saved_and_read_back(shared_model, tmp_path):
    from mtt_helpers.training import read_training_args

    config = recipe_config(epochs=3, seed=7, task_weights={"topic": 2.0}, tasks=["topic", "sentiment"])
    data = {"datasets": {"topic": "news"}, "rows": {"train": {"topic": 40}}, "seed": 7}
    shared_model.save(tmp_path / "model", include_encoder=False, training_args=config, training_data=data)
    assert read_training_args(tmp_path / "model") == (config, data)
    assert "training_args.json" in json.loads((tmp_path / "model" / "manifest.json").read_text())["files"]
    shared_model.save(tmp_path / "plain", include_encoder=False)
    with pytest.raises(FileNotFoundError, match="saved without training_args"):
        read_training_args(tmp_path / "plain")
    with pytest.raises(ValueError, match="cannot be saved as JSON"):
        shared_model.save(tmp_path / "bad", include_encoder=False, training_args=config, training_data={"x": {1, 2}})
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("settings, message", [
    ({"epoch": 2}, r"unknown TrainConfig key\(s\) \['epoch'\]"),
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"epochs": "2"}, "not supported between"),  # a string where a number belongs
])
def test_training_args_json_is_checked_on_reading(tmp_path, settings, message):
    """Every value of training_args.json is checked as the TrainConfig constructor checks it."""
    from mtt_helpers.training import read_training_args

    (tmp_path / "training_args.json").write_text(json.dumps({"train_config": settings, "data": {}}))
    with pytest.raises(ValueError, match=rf"Unreadable training arguments '.*training_args.json': .*{message}"):
        read_training_args(tmp_path)


@pytest.mark.parametrize("key, value", [("max_seq_length", 2000), ("hidden_dim", "abc")])
def test_the_command_line_reports_a_bad_config_value_in_one_line(saved, tmp_path, capsys, key, value):
    from mtt.cli import main

    copy = edited_copy(saved, tmp_path, **{key: value})
    (tmp_path / "in.csv").write_text("text\nhello\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(copy), str(tmp_path / "in.csv")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert f"{copy / 'config.json'}" in err and key in err and repr(value) in err


def test_an_edited_config_json_is_refused_by_its_digest(saved, tmp_path):
    copy = edited_copy(saved, tmp_path, record=False, dropout=0.2)
    with pytest.raises(ValueError, match=r"config.json' has sha256 [0-9a-f]{64}, not the [0-9a-f]{64} it was written with"):
        MultiTaskSentenceTransformer.load(copy, device="cpu")


def test_one_flipped_bit_in_the_head_weights_is_refused(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    weights = bytearray((copy / "heads.safetensors").read_bytes())
    weights[-1] ^= 0x01  # the lowest bit of the last weight: a valid file, a slightly different model
    (copy / "heads.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ValueError, match=r"heads.safetensors' has sha256 [0-9a-f]{64}, not the [0-9a-f]{64} it "
                                         r"was written with: it was changed or replaced since"):
        MultiTaskSentenceTransformer.load(copy, device="cpu")


def test_head_weights_from_another_model_are_refused(saved, tmp_path, encoder):
    other = MultiTaskSentenceTransformer(encoder)  # other random heads, same labels and shapes
    other.save(tmp_path / "other", include_encoder=False)
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    shutil.copy(tmp_path / "other" / "heads.safetensors", copy / "heads.safetensors")
    with pytest.raises(ValueError, match="heads.safetensors' has sha256"):
        MultiTaskSentenceTransformer.load(copy, device="cpu")


def test_a_nan_weight_is_refused_on_load_and_by_the_predictions_table(encoder, tmp_path):
    model = MultiTaskSentenceTransformer(encoder)
    with torch.no_grad():
        model.heads["sentiment"].classifier.bias[1] = float("nan")
    with pytest.raises(ValueError, match="sentiment logits hold NaN or infinite values"):
        model.predict(["A fine day."])  # argmax of NaN would silently name a label
    model.save(tmp_path / "model", include_encoder=False)
    with pytest.raises(ValueError, match=r"weight\(s\) \['sentiment.classifier.bias'\] hold NaN or infinite values"):
        MultiTaskSentenceTransformer.load(tmp_path / "model", device="cpu")
    with pytest.raises(ValueError, match="topic logits hold NaN"):
        predictions_table(["x"], {"topic": [[float("inf"), 0.0]], "sentiment": [[0.0, 1.0]]},
                          {"topic": ["a", "b"], "sentiment": ["c", "d"]})


def test_a_saved_encoder_without_its_tokenizer_is_refused(shared_model, tmp_path):
    """Without tokenizer.json the encoder would load a slower tokenizer from the vocabulary alone, silently."""
    shared_model.save(tmp_path / "model", include_encoder=True)
    (tmp_path / "model" / "encoder" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"Missing model file: '.*model/encoder/tokenizer.json'"):
        MultiTaskSentenceTransformer.load(tmp_path / "model", device="cpu")


def test_save_refuses_an_existing_folder_without_overwrite(shared_model, saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        shared_model.save(copy, include_encoder=False)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    shared_model.save(copy, include_encoder=False, overwrite=True)  # an earlier saved model: replaced
    (copy / "notes.md").write_text("the user's")
    with pytest.raises(FileExistsError, match="notes.md"):
        shared_model.save(copy, include_encoder=False, overwrite=True)
    assert (copy / "notes.md").read_text() == "the user's"
