"""Rebuild the external datasets (``train.csv``/``dev.csv``) from their public sources.

    mtt fetch-data --dest DIR            # download, build, write DIR/<name>/{train,dev}.csv
    mtt fetch-data --dest DIR --raw-dir RAW --no-download   # build from files already in RAW

The rules and their honesty notes are in ``mtt_helpers.data.fetch``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from mtt_helpers.cli.common import fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt fetch-data`` and its options."""
    parser = subparsers.add_parser("fetch-data", help="download the public sources and rebuild the external datasets",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", required=True, help="folder to write <dataset>/{train,dev}.csv into (MTT_DATA_DIR)")
    parser.add_argument("--raw-dir", help="keep the raw downloads here (default: a temporary folder, deleted after)")
    parser.add_argument("--no-download", action="store_true", help="build from the files already in --raw-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace existing train.csv/dev.csv files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Download (unless ``--no-download``), build, write."""
    dest = Path(args.dest).expanduser().resolve()
    if args.no_download and not args.raw_dir:
        fail("--no-download needs --raw-dir (the folder holding the raw files)")
    if args.raw_dir and dest in Path(args.raw_dir).expanduser().resolve().parents:
        fail("--raw-dir must not be inside --dest: the raw files hold test splits, which stay out of the data folder")

    from mtt_helpers.data.fetch import ChecksumError, build_datasets, download, write_datasets

    with tempfile.TemporaryDirectory(prefix="mtt_raw_") as temporary:
        raw_dir = Path(args.raw_dir).expanduser() if args.raw_dir else Path(temporary)
        try:
            if not args.no_download:
                for url, digest in download(raw_dir).items():
                    print(f"{digest}  {url}")
            built = build_datasets(raw_dir)
            written = write_datasets(built, dest, overwrite=args.overwrite)
        except (OSError, ValueError, ChecksumError) as error:
            fail(str(error))
    for name, splits in built.items():
        sizes = ", ".join(f"{split} {len(frame)}" for split, frame in splits.items())
        print(f"{name}: {sizes}; dropped {splits['train'].attrs.get('stats', {})}")
    print(f"wrote {len(written)} files under {dest}")
