"""Safe writes: whole outputs or nothing, ordinary permissions, and a directory swap that rolls back."""

import os
import stat

import pytest

from mtt_helpers.files import write_atomically


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_file_and_directory_get_ordinary_permissions(tmp_path, umask_022):
    write_atomically(tmp_path / "out.csv", lambda path: path.write_text("a,b\n"))
    assert mode(tmp_path / "out.csv") == 0o644  # mkstemp alone would give 0600

    def write_dir(path):
        (path / "sub").mkdir()
        (path / "sub" / "weights").write_bytes(b"x")
        os.chmod(path / "sub" / "weights", 0o600)  # as safetensors writes them

    write_atomically(tmp_path / "model", write_dir, is_dir=True)
    assert mode(tmp_path / "model") == 0o755  # mkdtemp alone would give 0700
    assert mode(tmp_path / "model" / "sub") == 0o755
    assert mode(tmp_path / "model" / "sub" / "weights") == 0o644


def test_replacing_a_directory_keeps_nothing_old_and_leaves_no_temporaries(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")
    write_atomically(tmp_path / "model", lambda path: (path / "new.txt").write_text("new"), is_dir=True)
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failing_write_leaves_the_old_directory(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")

    def broken(path):
        (path / "half").write_text("...")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(tmp_path / "model", broken, is_dir=True)
    assert (tmp_path / "model" / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failing_rename_rolls_back_to_the_old_directory(tmp_path, monkeypatch):
    """Delete-then-rename would lose the old directory when the rename fails."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")

    def failing(real):
        def rename(source, target, *args, **kwargs):
            if os.path.basename(source).startswith(".model.tmp") and os.path.basename(target) == "model":
                raise OSError("rename failed")
            return real(source, target, *args, **kwargs)

        return rename

    monkeypatch.setattr(os, "rename", failing(os.rename))
    monkeypatch.setattr(os, "replace", failing(os.replace))
    with pytest.raises(OSError, match="rename failed"):
        write_atomically(tmp_path / "model", lambda path: (path / "new.txt").write_text("new"), is_dir=True)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
