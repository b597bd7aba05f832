"""Safe writes: whole outputs or nothing, ordinary permissions, a directory swap that rolls back, a folder
that appears meanwhile never lost, file-system errors as one line, and leftovers of killed writes removed
on the next write into the same folder (only ours)."""

import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from mtt_core.files import MANIFEST_FILE, WRITER_MARKER, WriteError, read_manifest, write_atomically

KIND = "model"


def write_folder(target, write, overwrite=True):
    write_atomically(target, write, is_dir=True, kind=KIND, overwrite=overwrite)


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

    write_folder(tmp_path / "model", write_dir)
    assert mode(tmp_path / "model") == 0o755  # mkdtemp alone would give 0700
    assert mode(tmp_path / "model" / "sub") == 0o755
    assert mode(tmp_path / "model" / "sub" / "weights") == 0o644


def test_replacing_a_directory_keeps_nothing_old_and_leaves_no_temporaries(tmp_path):
    write_folder(tmp_path / "model", lambda path: (path / "old.txt").write_text("old"))
    assert list(read_manifest(tmp_path / "model")["files"]) == ["old.txt"]
    write_folder(tmp_path / "model", lambda path: (path / "new.txt").write_text("new"))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [MANIFEST_FILE, "new.txt"]
    assert read_manifest(tmp_path / "model") == {"written_by": "mtt_helpers", "kind": KIND,
                                                 "files": {"new.txt": hashlib.sha256(b"new").hexdigest()}}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_folder_with_a_file_its_manifest_does_not_list_is_never_replaced(tmp_path):
    write_folder(tmp_path / "model", lambda path: (path / "old.txt").write_text("old"))
    (tmp_path / "model" / "mine.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match=r"1 item\(s\): mine.txt"):
        write_folder(tmp_path / "model", lambda path: (path / "new.txt").write_text("new"))
    assert (tmp_path / "model" / "mine.txt").read_text() == "the user's"
    assert (tmp_path / "model" / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_file_added_while_writing_is_not_lost(tmp_path):
    """The rule is checked again just before the swap: the folder may change during a long write."""
    write_folder(tmp_path / "model", lambda path: (path / "old.txt").write_text("old"))

    def slow_write(path):
        (path / "new.txt").write_text("new")
        (tmp_path / "model" / "notes.txt").write_text("written meanwhile")

    with pytest.raises(FileExistsError, match="notes.txt"):
        write_folder(tmp_path / "model", slow_write)
    assert (tmp_path / "model" / "notes.txt").read_text() == "written meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failing_write_leaves_the_old_directory(tmp_path):
    write_folder(tmp_path / "model", lambda path: (path / "old.txt").write_text("old"))

    def broken(path):
        (path / "half").write_text("...")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder(tmp_path / "model", broken)
    assert (tmp_path / "model" / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failing_rename_rolls_back_to_the_old_directory(tmp_path, monkeypatch):
    """Delete-then-rename would lose the old directory when the rename fails."""
    write_folder(tmp_path / "model", lambda path: (path / "old.txt").write_text("old"))

    def failing(real):
        def rename(source, target, *args, **kwargs):
            # Only once the old folder has been moved away: the rename that puts the new one in its place.
            if (os.path.basename(source).startswith(".model.tmp") and os.path.basename(target) == "model"
                    and not os.path.exists(target)):
                raise OSError(errno.EIO, "rename failed")
            return real(source, target, *args, **kwargs)

        return rename

    monkeypatch.setattr(os, "rename", failing(os.rename))
    monkeypatch.setattr(os, "replace", failing(os.replace))
    with pytest.raises(WriteError, match="cannot write .*model: rename failed"):
        write_folder(tmp_path / "model", lambda path: (path / "new.txt").write_text("new"))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [MANIFEST_FILE, "old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


KILLED_WRITER = """
import sys, time
from mtt_core.files import write_atomically

def write(path):
    (path / "weights.bin").write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(600)

write_atomically(sys.argv[1], write, is_dir=True, kind="model")
"""


def test_the_leftover_of_a_killed_write_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "weights.bin").is_file()
    write_folder(target, lambda path: (path / "new.txt").write_text("new"))
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def make_leftover(tmp_path, name, files=(), marker=None, manifest=None, age=0):
    folder = tmp_path / name
    folder.mkdir()
    for file in files:
        (folder / file).write_text("content")
    if marker is not None:
        (folder / WRITER_MARKER).write_text(json.dumps(marker))
    if manifest is not None:
        (folder / MANIFEST_FILE).write_text(json.dumps({"written_by": "mtt_helpers", "kind": KIND, "files": manifest}))
    os.utime(folder, (time.time() - age, time.time() - age))
    return folder


def test_only_our_own_stale_leftovers_are_removed(tmp_path):
    import socket

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    removed = [
        make_leftover(tmp_path, ".model.tmp-0123abcd", ["w.bin"], marker={"pid": dead_pid, "host": host}),
        make_leftover(tmp_path, ".model.old-89abcdef", ["w.bin"], manifest={"w.bin": "0" * 64}, age=3600),  # a crash
        # between renames, an hour ago
        make_leftover(tmp_path, ".other.tmp-0123abcd", ["w.bin"], marker={"pid": dead_pid, "host": host}),  # another
        # target in the same folder
        make_leftover(tmp_path, ".model.tmp-00000000", age=3600),  # empty for an hour
    ]
    kept = [
        make_leftover(tmp_path, ".model.tmp-11111111", ["w.bin"], marker={"pid": os.getpid(), "host": host}),  # running
        make_leftover(tmp_path, ".model.tmp-22222222", ["w.bin"], marker={"pid": dead_pid, "host": "elsewhere"}),
        make_leftover(tmp_path, ".model.old-33333333", ["w.bin", "mine.txt"], manifest={"w.bin": "0" * 64},
                      age=3600),  # a user's file
        make_leftover(tmp_path, ".model.tmp-66666666", ["w.bin"], manifest={"w.bin": "0" * 64}),  # whole, just now:
        # a live writer may be about to rename it
        make_leftover(tmp_path, ".model.tmp-44444444", ["notes.txt"]),  # no marker, no manifest: not ours
        make_leftover(tmp_path, ".model.tmp-55555555"),  # empty, but just made: a writer may be starting
        make_leftover(tmp_path, ".model.tmp-0123abcdX", ["w.bin"], marker={"pid": dead_pid, "host": host}),  # not our name
    ]
    write_folder(tmp_path / "model", lambda path: (path / "new.txt").write_text("new"))
    assert not any(folder.exists() for folder in removed)
    assert all(folder.is_dir() for folder in kept)


def test_the_leftover_of_a_killed_write_is_removed_by_any_next_write_into_its_folder(tmp_path):
    """``.out.tmp-1a2b3c4d`` of a dead writer goes with the next write of another name, a file included."""
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = make_leftover(tmp_path, ".out.tmp-1a2b3c4d", ["weights.bin"],
                             marker={"pid": int(dead.stdout), "host": socket.gethostname()})
    write_atomically(tmp_path / "predictions.csv", lambda path: path.write_text("text\n"))
    assert not leftover.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_without_overwrite_an_existing_output_is_refused_before_writing(tmp_path):
    write_folder(tmp_path / "model", lambda path: (path / "old.txt").write_text("old"))
    written = []
    with pytest.raises(FileExistsError, match="exists; pass overwrite"):
        write_folder(tmp_path / "model", written.append, overwrite=False)
    assert written == [] and (tmp_path / "model" / "old.txt").read_text() == "old"
    (tmp_path / "empty").mkdir()
    write_folder(tmp_path / "empty", lambda path: (path / "new.txt").write_text("new"), overwrite=False)
    assert (tmp_path / "empty" / "new.txt").read_text() == "new"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_appears_while_writing_is_never_lost(tmp_path, overwrite):
    """The target did not exist at the start; a user's folder created meanwhile is left where it is."""
    target = tmp_path / "out"

    def write(path):
        (path / "weights.bin").write_text("new")
        target.mkdir()
        (target / "results.csv").write_text("the user's")

    with pytest.raises(FileExistsError, match="results.csv" if overwrite else "appeared while this was written"):
        write_folder(target, write, overwrite=overwrite)
    assert [p.name for p in target.iterdir()] == ["results.csv"] and (target / "results.csv").read_text() == "the user's"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_earlier_output_that_appears_while_writing_is_replaced_only_with_overwrite(tmp_path):
    target = tmp_path / "out"

    def write(path):
        (path / "new.txt").write_text("new")
        if not target.exists():
            write_folder(target, lambda other: (other / "other.txt").write_text("another run's"))

    with pytest.raises(FileExistsError, match="appeared while this was written"):
        write_folder(target, write, overwrite=False)
    assert (target / "other.txt").read_text() == "another run's"
    write_folder(target, write, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST_FILE, "new.txt"]


def test_the_rule_is_applied_to_what_the_rename_moves_away(tmp_path, monkeypatch):
    """A file dropped into the old folder after every earlier check, just before it is moved away, is kept:
    the check runs on the folder the rename moved, not on what was there a moment before."""
    target = tmp_path / "model"
    write_folder(target, lambda path: (path / "old.txt").write_text("old"))
    real = os.rename

    def rename(source, destination, *args, **kwargs):
        if os.fspath(source) == os.fspath(target) and os.path.basename(destination).startswith(".model.old-"):
            (target / "notes.txt").write_text("written at the last moment")
        return real(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(FileExistsError, match="notes.txt"):
        write_folder(target, lambda path: (path / "new.txt").write_text("new"))
    monkeypatch.undo()
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST_FILE, "notes.txt", "old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("is_dir", [False, True])
def test_a_full_disk_is_one_line_naming_the_path_and_the_old_output_stays(tmp_path, is_dir):
    target = tmp_path / ("model" if is_dir else "out.csv")
    first = (lambda path: (path / "old.txt").write_text("old")) if is_dir else (lambda path: path.write_text("old"))
    write_atomically(target, first, is_dir=is_dir, kind=KIND if is_dir else None)

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as error:
        write_atomically(target, full, is_dir=is_dir, kind=KIND if is_dir else None)
    assert str(error.value) == f"cannot write {target}: No space left on device"
    assert (target / "old.txt" if is_dir else target).read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_full_disk_reported_by_a_rust_library_is_a_write_error(tmp_path):
    """safetensors and tokenizers raise their own exception types, naming the OS error in the message."""

    class SafetensorError(Exception):
        pass

    def full(path):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'model'}: No space left on device"):
        write_folder(tmp_path / "model", full)
    assert list(tmp_path.iterdir()) == []

    def broken(path):
        raise SafetensorError("some other failure")

    with pytest.raises(SafetensorError):  # not a file-system error: raised as it is
        write_folder(tmp_path / "model", broken)
