"""The data rebuild: text rules, the build on raw-format fixtures, the writer, and the pinned checksums.

The fixtures in ``tests/fixtures/fetch_data`` are tiny files in each source's raw format, laid out
as the download step stores them (``owner__name/path``). The download itself is tested end to end
in ``test_data_download.py``.
"""

import hashlib
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import mtt_helpers.data.fetch as fetch_data
import mtt_helpers.data.fetch.build as fetch_build
from mtt_helpers.cli import main as mtt
from mtt_helpers.data.fetch import (
    DATASETS,
    BuildConfig,
    build_datasets,
    collapse_whitespace,
    dedup_key,
    deduplicate,
    detokenise_headline,
    normalise_tweet,
    write_datasets,
)

FIXTURES = Path(__file__).parent / "fixtures" / "fetch_data"
SMALL = BuildConfig(huffpost_other_per_category=6)  # the fixture has 12 headlines per category


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
    assert "Seppälä will open two new stores in Tampere ." in fetch_data.read_phrasebank(FIXTURES)["text"].tolist()
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
    for raw in fetch_data.RAW_FILES.values():
        assert raw.commit == DATA_CARD_COMMITS[raw.repo], raw.path
        assert raw.url == f"https://raw.githubusercontent.com/{raw.repo}/{raw.commit}/{raw.path}"
        assert raw.url_at("http://127.0.0.1:8000/") == f"http://127.0.0.1:8000/{raw.repo}/{raw.commit}/{raw.path}"
        assert re.fullmatch("[0-9a-f]{40}", raw.commit) and re.fullmatch("[0-9a-f]{64}", raw.sha256), raw.path
    assert len(fetch_data.RAW_FILES) == 18 and len({raw.sha256 for raw in fetch_data.RAW_FILES.values()}) == 18


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
    with pytest.raises(OSError, match="No space left"):
        write_datasets(built, tmp_path / "data")
    assert list(tmp_path.iterdir()) == []  # neither a file nor the temporary folder beside the destination


def test_cli_builds_from_a_raw_folder_without_downloading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch_build, "BuildConfig", lambda: SMALL)
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
