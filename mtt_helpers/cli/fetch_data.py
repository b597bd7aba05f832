"""Download the public sources (HuffPost, TweetEval, Financial PhraseBank) and build the datasets the notebooks read.

    mtt fetch-data --dest DIR            # download, build, write DIR/<name>/{train,dev}.csv
    mtt fetch-data --dest DIR --raw-dir RAW --no-download   # build from files already in RAW

Then ``export MTT_DATA_DIR=DIR``. The notebooks do the same on first use, into the download cache
(``~/.cache/mtt_helpers/data``), when ``MTT_DATA_DIR`` is unset. The rules and their honesty notes
are in ``mtt_helpers.data.fetch``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mtt_helpers.cli.common import fail

DESCRIPTION = """\
Downloads the raw files of the public sources, each pinned to a commit (from MTT_DATA_BASE_URL,
default https://raw.githubusercontent.com), checks each against its recorded sha256, builds the
train and dev splits of tweeteval_sentiment, financial_phrasebank and huffpost_news_category (test
splits are used as filters and never written), and writes DEST/<dataset>/{train,dev}.csv: all six
files or none. Existing files are refused before anything is downloaded, unless --overwrite.
Point MTT_DATA_DIR at DEST to use them. Without MTT_DATA_DIR, the notebooks do all this themselves on
first use, into the download cache ~/.cache/mtt_helpers/data (MTT_CACHE_DIR)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt fetch-data`` and its options."""
    parser = subparsers.add_parser("fetch-data", help="download the public sources and rebuild the external datasets",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", required=True, help="folder to write <dataset>/{train,dev}.csv into (MTT_DATA_DIR)")
    parser.add_argument("--raw-dir", help="keep the raw downloads here (default: a temporary folder, deleted after); "
                                          "not inside --dest, nor --dest inside it")
    parser.add_argument("--no-download", action="store_true", help="build from the files already in --raw-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace existing train.csv/dev.csv files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Check the folders and existing files, download (unless ``--no-download``), build, write."""
    if args.no_download and not args.raw_dir:
        fail("--no-download needs --raw-dir (the folder holding the raw files)")

    from mtt_helpers.data.fetch import ChecksumError, fetch_datasets
    from mtt_helpers.data.settings import DataSettings

    dest = Path(args.dest).expanduser().resolve()
    try:
        settings = DataSettings.from_env()
        built = fetch_datasets(dest, args.raw_dir, download_raw=not args.no_download, overwrite=args.overwrite,
                               base_url=settings.base_url, timeout=settings.download_timeout)
    except (OSError, ValueError, ChecksumError) as error:
        fail(str(error))
    for name, splits in built.items():
        sizes = ", ".join(f"{split} {len(frame)}" for split, frame in splits.items())
        print(f"{name}: {sizes}; dropped {splits['train'].attrs.get('stats', {})}")
    print(f"wrote {2 * len(built)} files under {dest}")
