"""The one rule for replacing a folder: only an earlier output of ours, holding nothing its manifest does not
list; and the manifest's digests, which every reader checks."""

import hashlib
import json

import pytest

from mtt_core.files import (
    MANIFEST_FILE, add_file, check_replaceable, read_manifest, sha256_of, unaccounted, verify_files, write_atomically,
    write_manifest,
)


def output(folder, files, kind="model"):
    """A folder as one of our writers leaves it: ``files`` and a manifest listing them."""
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("ours")
    write_manifest(folder, kind)
    return folder


def test_missing_empty_and_our_own_outputs_may_be_replaced(tmp_path):
    check_replaceable(tmp_path / "missing", "model")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", "model")
    model = output(tmp_path / "empty", ["config.json", "encoder/model.safetensors", "encoder/1_Pooling/config.json"])
    files = read_manifest(model)["files"]  # every file with its sha256
    assert list(files) == ["config.json", "encoder/1_Pooling/config.json", "encoder/model.safetensors"]
    assert files["config.json"] == sha256_of(model / "config.json") == hashlib.sha256(b"ours").hexdigest()
    check_replaceable(model, "model")
    (model / "encoder" / "model.safetensors").unlink()  # fewer files than listed: nothing of the user's to lose
    check_replaceable(model, "model")


def test_a_folder_without_our_manifest_is_refused_naming_what_it_holds(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "heads.safetensors").write_text("looks like a model, but nothing says we wrote it")
    with pytest.raises(FileExistsError, match=r"no manifest.json of mtt_helpers.*2 item\(s\): config.json, heads.safetensors"):
        check_replaceable(tmp_path, "model")
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"files": {"config.json": "0" * 64}}))  # not ours
    with pytest.raises(FileExistsError, match="no manifest.json of mtt_helpers"):
        check_replaceable(tmp_path, "model")


def test_extra_files_folders_and_links_are_named_first_few_and_counted(tmp_path):
    output(tmp_path, ["config.json", "encoder/model.safetensors"])
    for name in ["a.txt", "b.txt", "c.txt", "d.txt", "encoder/notes.md"]:
        (tmp_path / name).write_text("the user's")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss.png").write_text("the user's")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    assert unaccounted(tmp_path) == ["a.txt", "b.txt", "c.txt", "d.txt", "encoder/notes.md", "link", "plots/"]
    with pytest.raises(FileExistsError, match=r"7 item\(s\): a.txt, b.txt, c.txt, d.txt, encoder/notes.md \(and 2 more\)"):
        check_replaceable(tmp_path, "model")


def test_a_listed_name_that_became_a_link_is_refused(tmp_path):
    output(tmp_path, ["config.json"])
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").symlink_to("/etc/hostname")
    with pytest.raises(FileExistsError, match="config.json"):
        check_replaceable(tmp_path, "model")


def test_another_kind_a_file_and_a_symlink_are_refused(tmp_path):
    export = output(tmp_path, ["model.onnx", "config.json"], kind="onnx")
    with pytest.raises(FileExistsError, match="holds an ONNX export, not a saved model"):
        check_replaceable(export, "model")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        check_replaceable(tmp_path / "file", "model")
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="symbolic link"):
        check_replaceable(tmp_path.parent / f"{tmp_path.name}-link", "onnx")


def test_source_and_target_may_not_lie_inside_one_another(tmp_path):
    (tmp_path / "out" / "model").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "out")
    for target, source in [(tmp_path / "out", tmp_path / "out" / "model"),  # the model inside what is replaced
                           (tmp_path / "out" / "model" / "onnx", tmp_path / "out" / "model"),
                           (tmp_path / "out", tmp_path / "out"),
                           (tmp_path / "out" / "onnx", tmp_path / "alias")]:  # the same, through a link
        with pytest.raises(ValueError, match="lie inside one\\s+another"):
            check_replaceable(target, "onnx", sources=[source])
    check_replaceable(tmp_path / "elsewhere", "onnx", sources=[tmp_path / "out" / "model"])


def test_the_old_manifest_format_without_digests_is_not_ours(tmp_path):
    """A list of names (the format before digests) cannot be checked, so it is read as no manifest."""
    output(tmp_path, ["config.json"])
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"written_by": "mtt_helpers", "kind": "model",
                                                      "files": ["config.json"]}))
    assert read_manifest(tmp_path) is None
    with pytest.raises(ValueError, match="no manifest.json of mtt_helpers"):
        verify_files(tmp_path)


def test_verify_files_names_the_changed_file_and_both_digests(tmp_path):
    output(tmp_path, ["config.json", "encoder/model.safetensors"])
    verify_files(tmp_path)
    verify_files(tmp_path, ["config.json"])
    recorded = read_manifest(tmp_path)["files"]["encoder/model.safetensors"]
    (tmp_path / "encoder" / "model.safetensors").write_text("ourS")  # one flipped bit
    changed = sha256_of(tmp_path / "encoder" / "model.safetensors")
    with pytest.raises(ValueError, match=f"model.safetensors.*sha256 {changed}, not the {recorded} it was written with"):
        verify_files(tmp_path)
    verify_files(tmp_path, ["config.json"])  # only what a reader reads is checked
    with pytest.raises(ValueError, match="not listed in manifest.json"):
        verify_files(tmp_path, ["notes.md"])
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        verify_files(tmp_path, ["config.json"])


def test_add_file_records_the_new_file_and_refuses_an_unlisted_one(tmp_path):
    folder = tmp_path / "export"
    write_atomically(folder, lambda path: (path / "model.onnx").write_text("fp32"), is_dir=True, kind="onnx")
    add_file(folder, "model.int8.onnx", lambda path: path.write_text("int8"), "onnx")
    assert read_manifest(folder)["files"]["model.int8.onnx"] == hashlib.sha256(b"int8").hexdigest()
    verify_files(folder)
    (folder / "notes.md").write_text("the user's")
    with pytest.raises(FileExistsError, match="does not list it"):
        add_file(folder, "notes.md", lambda path: path.write_text("ours"), "onnx")
    assert (folder / "notes.md").read_text() == "the user's"
    with pytest.raises(FileExistsError, match="is not a saved model written by mtt_helpers"):
        add_file(folder, "model.int8.onnx", lambda path: path.write_text("int8"), "model")
