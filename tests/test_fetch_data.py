"""The data rebuild: text rules, the build on raw-format fixtures, the raw files' checksums, the
all-or-none writer, and the pinned sources.

The fixtures in ``tests/fixtures/fetch_data`` are tiny files in each source's raw format, laid out
as the download step stores them (``owner__name/path``); their digests are recorded below and stand in
for the real files' in ``RAW_FILES`` wherever a test builds from them through ``fetch_datasets`` or
``mtt fetch-data``. The download itself is tested end to end in ``test_data_download.py``.
"""

import dataclasses
import errno
import hashlib
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import mtt.data.build as fetch_build
from mtt.cli import main as mtt
from mtt.data.build import (
    build_datasets, collapse_whitespace, dedup_key, deduplicate, detokenise_headline, normalise_tweet, read_phrasebank,
)
from mtt.data.fetch import ChecksumError, fetch_datasets, verify_raw, write_datasets
from mtt.data.sources import DATASETS, RAW_FILES, BuildConfig

FIXTURES = Path(__file__).parent / "fixtures" / "fetch_data"
SMALL = BuildConfig(huffpost_other_per_category=6)  # the fixture has 12 headlines per category

FIXTURE_RAW_SHA256 = {
    "tweeteval_val_text": "e4ed2ead1b5e3d80d64a66b7f27a49b4b48d23dfe6997f7c7d2bca6e1bd80575",
    "tweeteval_val_labels": "679481dd0ce97e1d9c65903f439ef5f79adebc5f319750d87d18ab2ece0ba159",
    "tweeteval_test_text": "89783563023145f597e6b373e67eab13edd4a756ce92a228ba8fc422a21db8bb",
    "tweeteval_mapping": "c0572796fbe261d8ea5fd16c5061076fbba49bc69fc865d6abccaf60daacee24",
    "semeval_2013train": "d4153019e18a8473d14f63c58c923afcc5ce0fb232b924fe95ae67d21c524729",
    "semeval_2013dev": "d389fb7b83fb498221295f37c8e951ccee0bf4e48a52cf16baba90f9402e8bde",
    "semeval_2013test": "ddf9ea86a2be94593fdd9dbe636ab6fba5e7a0013acec71c037eed63497d3791",
    "semeval_2014test": "730b1d02915cc0dc19f4c7fde097c785c2385563a0bbf7660463e3aff772995c",
    "semeval_2014sarcasm": "645ca3cfa100d7adaa071f9944a22882c567edac892f59e133acaa888ccc25a0",
    "semeval_2015train": "b029ef831b2cdd66c8ec7f3c24c2cd5d733b6a7bc510944b8b998c9bf475b007",
    "semeval_2015test": "ced71c7d3955d75d5663eeb26566b463b9ad50741a6c7e926f8b7a6b059cef8c",
    "semeval_2016train": "2ea0ca2ca18da7294ac6ef872c57d2170c119e16b0b6b0971a30b24cd7e2050b",
    "semeval_2016dev": "97d0a9193579fc2bcf25bd525ba8a33f061252750e2848ca9060e933e7214218",
    "semeval_2016devtest": "11d5a4d34bd4d8f0097daa28738815641d09cc045d73661b755b5bb211a5495e",
    "semeval_2016test": "3b0ffd354606aa0b8aa3b5e795d71cc9926f226570d979c0ec40cbf84fa1d693",
    "phrasebank": "2ae7c751e2ccf7a18e934c769ab58a87909443366e13cdc9fa2f6077428295c7",
    "huffpost": "8022c5022806cda6ab8a08625f5ebe7724ec0880eed32ea428a3e8f4a53c1307",
    "huffpost_verbalizers": "a43a82a0f578235b0359cba3dae8ee8949615710a5563b03998b58148cb8e70b",
}
"""sha256 of each fixture raw file, recorded: what ``RAW_FILES`` expects while ``fixture_digests`` is in use."""


@pytest.fixture()
def fixture_digests(monkeypatch):
    """``RAW_FILES`` expecting the fixture files' recorded digests, and the small build config as the default."""
    for key, raw in RAW_FILES.items():
        monkeypatch.setitem(RAW_FILES, key, dataclasses.replace(raw, sha256=FIXTURE_RAW_SHA256[key]))
    monkeypatch.setattr(fetch_build, "BuildConfig", lambda: SMALL)


def test_the_recorded_fixture_digests_are_the_fixtures():
    assert {key: hashlib.sha256((FIXTURES / raw.local_path).read_bytes()).hexdigest()
            for key, raw in RAW_FILES.items()} == FIXTURE_RAW_SHA256


@pytest.fixture(scope="module")
def built():
    return build_datasets(FIXTURES, SMALL)


@pytest.mark.parametrize("raw, expected", [
    ("caf\\u00e9 time", "café time"),                                   # literal \uXXXX escape decoded
    ('he said \\"no\\" twice', 'he said "no" twice'),
    ('a ""quoted"" word', 'a "quoted" word'),                            # runs of double quotes collapsed
    ("fish &amp; chips &lt;3", "fish & chips <3"),
    ("@BBCNews @joe_b hi @user", "@user @user hi @user"),
    ("look https://t.co/AbC123 here http://x.y/z", "look here"),
    ("  lots \t of\n space  ", "lots of space"),
    ('"wrapped in quotes"', "wrapped in quotes"),                       # one wrapping pair stripped
    ('"Go" is "good"', 'Go" is "good'),                                  # the rule as the data card states it
    ('"only opens', '"only opens'),
])
def test_normalise_tweet(raw, expected):
    assert normalise_tweet(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("do n't stop , it 's fine !", "don't stop, it's fine!"),
    ("we 're sure they 'll go and i 'm in", "we're sure they'll go and i'm in"),
    ("mystery ' wolf - like ' animal", "mystery ' wolf-like ' animal"),  # straight quotes keep their spaces
    ("kanye spent $ 85,000 ( really )", "kanye spent $85,000 (really)"),
    ("warns of \u2018 nuclear showdown \u2019 : 90 %", "warns of \u2018nuclear showdown\u2019: 90%"),
    ("weinstein \u2019s walk", "weinstein\u2019s walk"),
    ("dr. king jr. - remembering", "dr. king jr. - remembering"),       # a dash after punctuation stays spaced
])
def test_detokenise_headline(raw, expected):
    assert detokenise_headline(raw) == expected


def test_dedup_key_ignores_case_mentions_urls_and_punctuation():
    assert dedup_key("@user Loving the SUNSHINE today!! http://t.co/x") == "lovingthesunshinetoday"
    assert dedup_key("Welcome !") == dedup_key("welcome!") == "welcome"
    assert dedup_key("Seppälä, 2 stores") == "seppälä2stores"


def test_deduplicate_drops_every_copy_of_a_conflicting_text_and_keeps_the_first_of_a_duplicate():
    frame = pd.DataFrame({"text": ["Good game!", "good game", "Bad day", "bad day.", "bad DAY", "Other"],
                          "label": ["positive", "positive", "negative", "neutral", "negative", "neutral"]})
    kept, stats = deduplicate(frame)
    assert kept["text"].tolist() == ["Good game!", "Other"]
    assert stats == {"duplicates": 1, "conflicting": 3}


def test_build_returns_train_and_dev_only_with_text_and_label(built):
    assert set(built) == {"tweeteval_sentiment", "financial_phrasebank", "huffpost_news_category"}
    for splits in built.values():
        assert set(splits) == {"train", "dev"}
        for frame in splits.values():
            assert list(frame.columns) == ["text", "label"] and len(frame) > 0


def test_tweeteval_dev_is_val_with_mapped_labels(built):
    dev = built["tweeteval_sentiment"]["dev"]
    assert dev["label"].tolist() == ["positive", "negative", "neutral", "positive", "negative", "neutral"]
    assert dev["text"].iloc[0] == "@user I loved the new album, best day ever"


def test_tweet_pool_is_normalised_deduplicated_and_kept_apart_from_dev_and_test(built):
    train = built["tweeteval_sentiment"]["train"]
    texts = train["text"].tolist()
    assert texts.count("Loving the sunshine today") == 1                      # URL removed; its duplicate dropped
    assert not any("watched the match" in text for text in texts)             # conflicting labels: all copies dropped
    assert not any("Leeds" in text for text in texts)                         # same key as a test tweet
    assert not any("M25" in text for text in texts)                           # same 40-character key prefix as a dev tweet
    assert "Best pizza in town, @user you have to try it" in texts
    assert "New episode tonight at 8pm www.example.com/show" in texts
    assert "Tune-in for the pageant on Sunday, July 12 at 8p ET." in texts    # the wrapping quotes of a CSV-style field
    assert 'Gary Ablett wins the MVP" & @user says \u2019fair\u2019' in texts
    assert train.attrs["stats"] == {"duplicates": 1, "conflicting": 2, "overlap_dev_or_test": 2, "overlap_any_test": 0}


def test_phrasebank_reads_latin1_collapses_whitespace_and_splits(built):
    splits = built["financial_phrasebank"]
    everything = pd.concat(splits.values())
    texts = everything["text"].tolist()
    assert "Seppälä will open two new stores in Tampere ." in read_phrasebank(FIXTURES)["text"].tolist()
    assert all("  " not in text and "@" not in text for text in texts)
    assert not any("expects net sales" in text for text in texts)             # conflicting labels
    assert "Welcome !" not in texts                                           # same key as a TweetEval test tweet
    assert texts.count("Operating profit rose to EUR 13.1 mn from EUR 8.7 mn .") <= 1
    # 42 lines, 39 left after dedup: 60/10/30 -> test round(11.7) = 12, dev round(3.9) = 4, train 23 less "Welcome !".
    assert (len(splits["train"]), len(splits["dev"])) == (22, 4)
    assert set(splits["dev"]["label"]) == {"negative", "neutral", "positive"}  # stratified


def test_huffpost_maps_categories_samples_other_and_detokenises(built):
    everything = pd.concat(built["huffpost_news_category"].values())
    subject_to_label = dict(zip(everything["text"].str.split().str[0], everything["label"]))
    assert {s: subject_to_label[s] for s in ("team", "doctor", "startup", "bank", "teachers", "campus", "senator", "actor")} == {
        "team": "sports", "doctor": "health", "startup": "tech", "bank": "finance",
        "teachers": "education", "campus": "education", "senator": "other", "actor": "other"}
    for subject in ("senator", "actor"):  # 12 in the raw file, 6 sampled for `other`
        assert everything["text"].str.startswith(subject + " ").sum() <= 6
    assert everything["text"].str.startswith("team ").sum() >= 8
    texts = everything["text"].tolist()
    assert not any("savings" in text for text in texts)                       # same headline, finance vs education
    assert texts.count("self-driving car costs $85,000 (and it's worth it)") <= 1
    assert all(" ," not in text and " 's" not in text for text in texts)


def test_build_is_deterministic_and_writes_train_and_dev_only(built, tmp_path):
    again = build_datasets(FIXTURES, SMALL)
    for name in built:
        for split in ("train", "dev"):
            pd.testing.assert_frame_equal(built[name][split], again[name][split])
    written = write_datasets(again, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        f"{name}/{split}.csv" for name in built for split in ("train", "dev"))
    assert len(written) == 6
    reread = pd.read_csv(tmp_path / "huffpost_news_category" / "train.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(reread, built["huffpost_news_category"]["train"].reset_index(drop=True))
    other_seed = build_datasets(FIXTURES, BuildConfig(huffpost_other_per_category=6, seed=14))
    assert not other_seed["financial_phrasebank"]["dev"].equals(built["financial_phrasebank"]["dev"])


def test_writer_refuses_test_splits_and_existing_files(built, tmp_path):
    with pytest.raises(ValueError, match=r"refusing to write split\(s\) \['test'\]"):
        write_datasets({"x": {"train": built["financial_phrasebank"]["train"], "test": built["financial_phrasebank"]["dev"]}}, tmp_path)
    assert not (tmp_path / "x" / "test.csv").exists()
    write_datasets(built, tmp_path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_datasets(built, tmp_path)
    write_datasets(built, tmp_path, overwrite=True)


def test_bad_raw_files_give_errors_naming_file_and_line(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES, raw)
    fpb = raw / "pkatwate__finBERT" / "Sentences_50Agree.txt"
    fpb.write_bytes(fpb.read_bytes() + b"A sentence without a label\r\n")
    with pytest.raises(ValueError, match=r"Sentences_50Agree.txt:43: expected 'sentence@"):
        build_datasets(raw, SMALL)
    shutil.copy(FIXTURES / "pkatwate__finBERT" / "Sentences_50Agree.txt", fpb)
    yaml_file = raw / "ws-jiang__MetaPrompter_public" / "configs" / "hard_verbalizers.yaml"
    yaml_file.write_text(yaml_file.read_text().replace('11: ["SPORTS"]', '11: ["COMEDY"]'))
    with pytest.raises(ValueError, match="label 11: verbalizer .* does not name 'SPORTS'"):
        build_datasets(raw, SMALL)
    shutil.rmtree(raw / "ws-jiang__MetaPrompter_public")
    with pytest.raises(FileNotFoundError, match=r"Raw file missing: .*hard_verbalizers.yaml \(from https://raw.githubusercontent.com/"):
        build_datasets(raw, SMALL)


DATA_CARD_COMMITS = {
    "cardiffnlp/tweeteval": "4fbd22cd78421f05b1ecdb4fc5725bc7a7bd8f66",
    "cbaziotis/datastories-semeval2017-task4": "faeee5fd1c2cf38e32179a4676dff53ae01adfa8",
    "pkatwate/finBERT": "5ca56265657fe3fc2fd6c3576aa3933f61b7a5bc",
    "ws-jiang/MetaPrompter_public": "dea17d573a5eb4f31b3366ba1fe88b1beb865c50",
}
"""The commit the data card names for each source repository, copied from it."""


def test_every_raw_file_is_pinned_to_the_data_cards_commit_and_a_checksum():
    for raw in RAW_FILES.values():
        assert raw.commit == DATA_CARD_COMMITS[raw.repo], raw.path
        assert raw.url == f"https://raw.githubusercontent.com/{raw.repo}/{raw.commit}/{raw.path}"
        assert raw.url_at("http://127.0.0.1:8000/") == f"http://127.0.0.1:8000/{raw.repo}/{raw.commit}/{raw.path}"
        assert re.fullmatch("[0-9a-f]{40}", raw.commit) and re.fullmatch("[0-9a-f]{64}", raw.sha256), raw.path
    assert len(RAW_FILES) == 18 and len({raw.sha256 for raw in RAW_FILES.values()}) == 18


FIXTURE_CSV_SHA256 = {
    "financial_phrasebank/dev.csv": "3e45e14d7339deda100e7b412ad2adfcdc42850f1779928c4ce240d7cb6e5c60",
    "financial_phrasebank/train.csv": "a091ecccb617bb783ecee53478dcae2ac97507f918508bc29f7f043183e17b87",
    "huffpost_news_category/dev.csv": "5cc501f794e2d4f1c725ec6c16118f615fe4df45d44c5c88bb13bcf62a9d8e54",
    "huffpost_news_category/train.csv": "12a425a13cd33495100705a7a8faff278d55d552177639fb2bb8d82dc2d9cc8f",
    "tweeteval_sentiment/dev.csv": "cb91c8c1eda93b15e80e73cc6f7a85742bcceb66962b4c3e8767bdf7b1844c9f",
    "tweeteval_sentiment/train.csv": "691bf78503d689fef83bf7283f8740edae6641f86f66f244d94c7c2d32faac97",
}
"""sha256 of the files the build writes from the fixtures: any change to the output rules (normalisation, dedup, splits, filters, CSV format) shows here."""


def test_the_build_output_from_the_fixtures_is_unchanged(built, tmp_path):
    assert set(built) == set(DATASETS)
    write_datasets(built, tmp_path)
    written = {p.relative_to(tmp_path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in tmp_path.rglob("*.csv")}
    assert written == FIXTURE_CSV_SHA256


def test_writer_writes_all_six_files_or_none(built, tmp_path, monkeypatch):
    calls, to_csv = [], pd.DataFrame.to_csv

    def fail_on_the_fourth(frame, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("No space left on device")
        return to_csv(frame, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_on_the_fourth)
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'data'}: No space left on device; the old files "
                                      "are unchanged"):
        write_datasets(built, tmp_path / "data")
    assert list(tmp_path.iterdir()) == []  # neither a file, nor the destination, nor the staging folder beside it


def test_cli_builds_from_a_raw_folder_without_downloading(fixture_digests, tmp_path, capsys):
    mtt(["fetch-data", "--dest", str(tmp_path / "data"), "--raw-dir", str(FIXTURES), "--no-download"])
    assert "wrote 6 files" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "data" / "tweeteval_sentiment").iterdir()) == ["dev.csv", "train.csv"]
    with pytest.raises(SystemExit):  # the files exist now: refused, naming them
        mtt(["fetch-data", "--dest", str(tmp_path / "data"), "--raw-dir", str(FIXTURES), "--no-download"])
    assert "6 file(s) exist: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mtt(["fetch-data", "--dest", str(tmp_path), "--raw-dir", str(tmp_path / "raw")])
    assert "is inside the data folder" in capsys.readouterr().err


@pytest.mark.skipif(os.environ.get("MTT_DATA_DIR", "bundled").strip() in ("", "bundled"),
                    reason="needs the external datasets (MTT_DATA_DIR)")
def test_rules_leave_the_real_dev_sets_unchanged():
    """The CI copy was built with these rules: applying them again to its dev sets changes no text and finds no duplicate."""
    root = Path(os.environ["MTT_DATA_DIR"])
    for name, rule in [("tweeteval_sentiment", normalise_tweet), ("huffpost_news_category", detokenise_headline),
                       ("financial_phrasebank", collapse_whitespace)]:
        texts = pd.read_csv(root / name / "dev.csv", dtype=str, keep_default_na=False)["text"]
        assert (texts.map(rule) == texts).all(), name
        assert not texts.map(dedup_key).duplicated().any(), name


# ----------------------------------------------------------------------------- every raw file checked
def raw_copy(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES, raw)
    return raw


def flip_first_label(path):
    """TweetEval's val_labels.txt with its first label changed (2 -> 0): same size, a valid file, a wrong label."""
    lines = path.read_text().splitlines(keepends=True)
    lines[0] = "0\n" if lines[0].strip() != "0" else "1\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("key, damage", [
    ("tweeteval_val_labels", flip_first_label),
    ("huffpost", lambda path: path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))),  # its
    # last three headlines lost, cut at a line end
])
def test_no_download_checks_every_raw_file_naming_it_and_both_digests(fixture_digests, tmp_path, capsys, key, damage):
    raw = raw_copy(tmp_path)
    path = raw / RAW_FILES[key].local_path
    damage(path)
    build_datasets(raw, SMALL)  # the build alone cannot tell: the damaged file is still well formed
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SystemExit) as exit_info:
        mtt(["fetch-data", "--dest", str(tmp_path / "data"), "--raw-dir", str(raw), "--no-download"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {path}: sha256 {actual} does not match the recorded "
                                       f"{FIXTURE_RAW_SHA256[key]}.\n")
    assert not (tmp_path / "data").exists()
    with pytest.raises(ChecksumError, match=f"{path.name}: sha256 {actual}"):
        verify_raw(raw)


def test_no_download_refuses_a_missing_raw_file(fixture_digests, tmp_path):
    raw = raw_copy(tmp_path)
    (raw / RAW_FILES["semeval_2016dev"].local_path).unlink()
    with pytest.raises(FileNotFoundError, match=r"Raw file missing: .*twitter-2016dev-A.tsv \(from https://"):
        fetch_datasets(tmp_path / "data", raw, download_raw=False)
    assert not (tmp_path / "data").exists()


# ----------------------------------------------------------------------------- all six files or none
def old_files(dest):
    """``dest/<name>/<split>.csv`` holding a line naming itself, as an earlier build's files."""
    for name in DATASETS:
        for split in ("train", "dev"):
            (dest / name).mkdir(parents=True, exist_ok=True)
            (dest / name / f"{split}.csv").write_text(f"text,label\nold {name} {split},neutral\n")
    return files_and_contents(dest)


def files_and_contents(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_replaces_no_file_when_one_target_is_not_a_file(fixture_digests, tmp_path, capsys):
    dest = tmp_path / "data"
    before = old_files(dest)
    (dest / "financial_phrasebank" / "dev.csv").unlink()
    (dest / "financial_phrasebank" / "dev.csv").mkdir()  # a folder where a file is to go
    (dest / "financial_phrasebank" / "dev.csv" / "mine.txt").write_text("the user's")
    del before["financial_phrasebank/dev.csv"]
    with pytest.raises(SystemExit) as exit_info:
        mtt(["fetch-data", "--dest", str(dest), "--raw-dir", str(FIXTURES), "--no-download", "--overwrite"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{dest / 'financial_phrasebank' / 'dev.csv'}: not a file" in err
    assert "nothing was written" in err
    assert files_and_contents(dest) == {**before, "financial_phrasebank/dev.csv/mine.txt": b"the user's"}


def test_overwrite_puts_every_old_file_back_when_a_move_fails(built, tmp_path, monkeypatch):
    """The fourth file cannot be moved in (a full disk, a permission): the three moved already go back."""
    dest = tmp_path / "data"
    before = old_files(dest)
    moves, replace = [], os.replace

    def failing(source, target):
        if os.path.basename(os.path.dirname(source)) not in DATASETS or ".old-" in os.fspath(source):
            return replace(source, target)  # an old file moved aside or back
        moves.append(target)
        if len(moves) == 4:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(target))
        return replace(source, target)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match=f"cannot write {dest}: Permission denied; the old files are unchanged"):
        write_datasets(built, dest, overwrite=True)
    monkeypatch.undo()
    assert len(moves) == 4 and files_and_contents(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging folder left


def test_a_full_disk_in_fetch_data_is_one_line_and_keeps_the_old_files(fixture_digests, tmp_path, capsys, monkeypatch):
    dest = tmp_path / "data"
    before = old_files(dest)

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(SystemExit) as exit_info:
        mtt(["fetch-data", "--dest", str(dest), "--raw-dir", str(FIXTURES), "--no-download", "--overwrite"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: cannot write {dest}: No space left on device; the old files are "
                                       "unchanged\n")
    assert files_and_contents(dest) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_staging_folder_of_a_killed_fetch_is_removed_by_the_next_one(built, tmp_path):
    import json
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / ".data.tmp-1a2b3c4d"
    (leftover / "tweeteval_sentiment").mkdir(parents=True)
    (leftover / "tweeteval_sentiment" / "train.csv").write_text("text,label\nhalf,")
    (leftover / ".mtt-writer").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    write_datasets(built, tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
