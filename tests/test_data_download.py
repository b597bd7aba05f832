"""The download path end to end, against a local HTTP server that serves the fixture raw files.

The server listens on 127.0.0.1 only and lays the files out as raw.githubusercontent.com does
(``/<owner>/<repo>/<commit>/<path>``); the expected checksums are the fixtures', injected into
``RAW_FILES``. It counts requests, can serve a changed file, and can close the connection halfway
through a file once.
"""

import dataclasses
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

import mtt.data.build as fetch_build
from mtt.cli import main as mtt
from mtt.data import locate_data
from mtt.data.build import build_datasets
from mtt.data.fetch import ChecksumError, DownloadError, download, write_datasets
from mtt.data.sources import RAW_FILES, BuildConfig
from mtt_helpers.data import load_task_data

FIXTURES = Path(__file__).parent / "fixtures" / "fetch_data"
SMALL = BuildConfig(huffpost_other_per_category=6)  # the fixture has 12 headlines per category
HUFFPOST_URL_PATH = "/{0.repo}/{0.commit}/{0.path}".format(RAW_FILES["huffpost"])


class RawServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes) and records every request as ``(method, path)``."""

    daemon_threads = True

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), RawHandler)
        self.files, self.requests, self.cut_once = dict(files), [], set()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class RawHandler(http.server.BaseHTTPRequestHandler):
    timeout = 10  # seconds a connection may idle

    def do_HEAD(self):
        self.server.requests.append(("HEAD", self.path))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.server.requests.append(("GET", self.path))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.cut_once:  # half the file, then the connection closes
            self.server.cut_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(monkeypatch):
    """The fixture raw files behind a local server, their checksums in ``RAW_FILES``, the small build config."""
    files = {}
    for key, raw in RAW_FILES.items():
        body = (FIXTURES / raw.local_path).read_bytes()
        files[f"/{raw.repo}/{raw.commit}/{raw.path}"] = body
        monkeypatch.setitem(RAW_FILES, key, dataclasses.replace(raw, sha256=hashlib.sha256(body).hexdigest()))
    monkeypatch.setattr(fetch_build, "BuildConfig", lambda: SMALL)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")
    running = RawServer(files)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()
    thread.join(timeout=10)


@pytest.fixture()
def use_server(server, tmp_path, monkeypatch):
    """The notebooks' environment: MTT_DATA_DIR unset, the cache in ``tmp_path/cache``, downloads from ``server``."""
    monkeypatch.delenv("MTT_DATA_DIR", raising=False)
    monkeypatch.setenv("MTT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MTT_DATA_BASE_URL", server.url)
    return tmp_path / "cache"


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def expected_csvs(tmp_path: Path) -> dict[str, bytes]:
    """The six files the build writes from the fixtures, written here directly."""
    write_datasets(build_datasets(FIXTURES, SMALL), tmp_path / "expected")
    return {name: (tmp_path / "expected" / name).read_bytes() for name in files_under(tmp_path / "expected")}


def test_first_use_downloads_builds_once_and_says_where(server, use_server, tmp_path, capsys):
    cache = use_server
    found = locate_data()
    out, err = capsys.readouterr()
    assert found.folder == cache and out == ""  # the line is returned for the notebook to print
    assert found.origin == (f"The public datasets (HuffPost, TweetEval, Financial PhraseBank), downloaded just now "
                            f"(checksums verified) into {cache}.")
    assert "18/18" in err  # the progress bar, over the 18 raw files
    data = load_task_data("dev", found.folder)
    assert data.real and data.source == ("Data: HuffPost headlines (topic) and TweetEval tweets (sentiment), dev split: "
                                         f"real text written by people, from {cache}.")
    assert sorted(server.requests) == sorted([("HEAD", "/")] + [("GET", path) for path in server.files])
    assert {name: (cache / name).read_bytes() for name in files_under(cache)} == expected_csvs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "expected"]  # no raw files or staging left beside it
    pd.testing.assert_series_equal(data.topic["text"], pd.read_csv(cache / "huffpost_news_category" / "dev.csv")["text"])

    again = locate_data()  # the cache is full: no request at all, nothing printed
    assert len(server.requests) == 1 + 18 and capsys.readouterr() == ("", "")
    assert again.folder == cache and again.origin == f"The public datasets, from the download cache {cache}."


def test_a_checksum_mismatch_is_an_error_and_keeps_nothing(server, use_server, tmp_path):
    server.files[HUFFPOST_URL_PATH] = b'{"raw": "changed upstream", "label": 0}\n'
    with pytest.raises(ChecksumError, match=r"huffpost.json: sha256 \w+ does not match the recorded .* run again"):
        locate_data()
    assert files_under(use_server) == []
    with pytest.raises(ChecksumError):  # a persistent raw folder keeps none of that download's files either
        download(tmp_path / "raw", base_url=server.url, progress=False)
    assert files_under(tmp_path / "raw") == []


def test_an_interrupted_download_keeps_nothing_and_a_rerun_completes(server, use_server, tmp_path):
    server.cut_once.add(HUFFPOST_URL_PATH)
    size = len(server.files[HUFFPOST_URL_PATH])
    with pytest.raises(DownloadError, match=rf"huffpost.json: the connection closed after {size // 2} of {size} bytes"):
        locate_data()
    assert files_under(use_server) == [] and sorted(p.name for p in tmp_path.iterdir()) == []
    found = locate_data()
    assert found.folder == use_server and found.origin.endswith(f"downloaded just now (checksums verified) into "
                                                                f"{use_server}.")
    assert len(files_under(use_server)) == 6

    server.cut_once.add(HUFFPOST_URL_PATH)  # the same at the download step, into a raw folder kept between runs
    with pytest.raises(DownloadError):
        download(tmp_path / "raw", base_url=server.url, progress=False)
    assert files_under(tmp_path / "raw") == []
    download(tmp_path / "raw", base_url=server.url, progress=False)
    assert len(files_under(tmp_path / "raw")) == 18


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_falls_back_to_the_bundled_set_in_one_line(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.delenv("MTT_DATA_DIR", raising=False)
    monkeypatch.setenv("MTT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MTT_DATA_BASE_URL", url)
    found = locate_data()
    reason = f"no connection to {url} within 5 s"
    assert found.folder is None and found.origin == (f"The bundled sentences instead of the public datasets: offline "
                                                     f"({reason}; MTT_DATA_DIR=bundled skips this check).")
    assert capsys.readouterr().out == ""
    data = load_task_data("dev", found.folder)
    assert not data.real and len(data.topic) == 270
    assert data.source == "Data: the bundled sentences (written with a language model for this tutorial), dev split."
    assert not (tmp_path / "cache").exists()


def test_the_bundled_setting_never_touches_the_network(server, use_server, monkeypatch, capsys):
    monkeypatch.setenv("MTT_DATA_DIR", "bundled")
    found = locate_data()
    assert found.folder is None and found.origin == "The bundled sentences, as MTT_DATA_DIR=bundled asks."
    assert server.requests == [] and capsys.readouterr().out == ""
    assert not load_task_data("train", found.folder, disjoint_bundled=True).real


def test_a_partly_filled_cache_is_refused_and_left_alone(server, use_server):
    mine = use_server / "tweeteval_sentiment" / "train.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("text,label\nmy own,positive\n")
    with pytest.raises(FileExistsError, match=r"holds only some .*missing: .*huffpost_news_category/dev.csv"):
        locate_data()
    assert mine.read_text() == "text,label\nmy own,positive\n" and server.requests == []


def test_a_present_raw_file_is_verified_before_anything_is_downloaded(server, tmp_path):
    raw = RAW_FILES["phrasebank"]
    (tmp_path / "raw" / raw.local_path).parent.mkdir(parents=True)
    (tmp_path / "raw" / raw.local_path).write_bytes(b"not the file")
    with pytest.raises(ChecksumError, match="Sentences_50Agree.txt: sha256"):
        download(tmp_path / "raw", base_url=server.url, progress=False)
    assert server.requests == [] and (tmp_path / "raw" / raw.local_path).read_bytes() == b"not the file"


def test_cli_downloads_refuses_existing_files_first_and_overwrites_when_asked(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTT_DATA_BASE_URL", server.url)
    dest = tmp_path / "data"
    mine = dest / "financial_phrasebank" / "dev.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("text,label\nmine,neutral\n")
    with pytest.raises(SystemExit):
        mtt(["fetch-data", "--dest", str(dest)])
    assert f"1 file(s) exist: {mine}; pass --overwrite" in capsys.readouterr().err
    assert server.requests == [] and mine.read_text() == "text,label\nmine,neutral\n"
    mtt(["fetch-data", "--dest", str(dest), "--overwrite"])
    assert capsys.readouterr().out.endswith(f"wrote 6 files under {dest}\n")
    assert {name: (dest / name).read_bytes() for name in files_under(dest)} == expected_csvs(tmp_path)


@pytest.mark.parametrize("raw, dest, message", [
    ("link/raw", "data", "is inside the data folder"),            # link -> data: inside once the symlink is resolved
    ("data", "data", "is inside the data folder"),
    ("raw", "raw/data", "is inside the raw folder"),
])
def test_cli_keeps_the_raw_and_data_folders_apart(server, tmp_path, monkeypatch, capsys, raw, dest, message):
    monkeypatch.setenv("MTT_DATA_BASE_URL", server.url)
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with pytest.raises(SystemExit):
        mtt(["fetch-data", "--dest", str(tmp_path / dest), "--raw-dir", str(tmp_path / raw)])
    assert message in capsys.readouterr().err and server.requests == []
    assert files_under(tmp_path / "data") == []


def test_mtt_data_dir_names_the_folder_without_touching_the_network(server, use_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MTT_DATA_DIR", str(tmp_path / "mine"))
    with pytest.raises(FileNotFoundError, match="MTT_DATA_DIR=.*mine' is not a folder"):
        locate_data()
    (tmp_path / "mine").mkdir()
    found = locate_data()
    assert found.folder == tmp_path / "mine" and found.origin == f"The public datasets, from MTT_DATA_DIR={tmp_path / 'mine'}."
    assert server.requests == []


def test_the_staging_folder_of_a_killed_download_is_removed_by_the_next_one(server, tmp_path):
    import json
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / "raw" / ".download.tmp-0a1b2c3d"
    leftover.mkdir(parents=True)
    (leftover / "huffpost.json").write_text('{"half": ')
    (leftover / ".mtt-writer").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    download(tmp_path / "raw", base_url=server.url, progress=False)
    assert len(files_under(tmp_path / "raw")) == 18 and not leftover.exists()
