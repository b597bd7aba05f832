"""What a saved model carries and checks on load: its labels (in the weights' metadata), range-checked
config values, its token limit, and the training settings it was made with."""

import json

import pytest

from mtt_helpers import MultiTaskConfig, MultiTaskSentenceTransformer, set_seed
from mtt_helpers.training import TrainConfig, recipe_config

TEXTS = ["The striker scored twice in the derby.", "Shares fell 4% after the earnings call."]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, shared_model):
    directory = tmp_path_factory.mktemp("checked") / "model"
    shared_model.save(directory, include_encoder=False)
    return directory


def edited_copy(saved, tmp_path, **changes):
    """A copy of the saved model whose config.json has ``changes``."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in saved.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **changes}))
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
    ("max_seq_length", 0, "max_seq_length must be a positive integer or null, got 0"),
    ("max_seq_length", "abc", "max_seq_length must be a positive integer or null, got 'abc'"),
    ("max_seq_length", 2000, "max_seq_length must be an integer from 1 to 512 .*got 2000"),
    ("tasks", {"topic": ["a", "a"], "sentiment": ["x", "y", "z"]}, "task 'topic' has duplicate labels"),
    ("encoder_saved", "yes", "encoder_saved must be true or false, got 'yes'"),
])
def test_bad_config_values_give_one_clear_error_naming_file_key_and_value(saved, tmp_path, key, value, message):
    copy = edited_copy(saved, tmp_path, **{key: value})
    with pytest.raises(ValueError, match=rf"model config '.*copy/config.json': {message}"):
        MultiTaskSentenceTransformer.load(copy, device="cpu")


def test_max_seq_length_is_checked_against_the_encoder_when_it_loads(encoder):
    with pytest.raises(ValueError, match="from 1 to 512"):
        MultiTaskSentenceTransformer(encoder, MultiTaskConfig(max_seq_length=513))
    model = MultiTaskSentenceTransformer(encoder, MultiTaskConfig(max_seq_length=512))
    assert model.encoder.max_seq_length == model.config.max_seq_length == 512
    with pytest.raises(ValueError, match="got 0"):
        model.set_max_seq_length(0)


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


def test_train_config_from_dict_checks_every_value():
    assert TrainConfig.from_dict(TrainConfig(epochs=5).to_dict()) == TrainConfig(epochs=5)
    with pytest.raises(ValueError, match=r"Unknown TrainConfig key\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 2})
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig.from_dict({"epochs": 0})
    with pytest.raises(ValueError, match="Invalid TrainConfig"):
        TrainConfig.from_dict({"epochs": "2"})


@pytest.mark.parametrize("key, value", [("max_seq_length", 2000), ("hidden_dim", "abc")])
def test_the_command_line_reports_a_bad_config_value_in_one_line(saved, tmp_path, capsys, key, value):
    from mtt_helpers.cli import main

    copy = edited_copy(saved, tmp_path, **{key: value})
    (tmp_path / "in.csv").write_text("text\nhello\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(copy), str(tmp_path / "in.csv")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert f"{copy / 'config.json'}" in err and key in err and repr(value) in err
