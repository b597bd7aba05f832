"""Rebuild the external datasets (``train.csv``/``dev.csv``) from their public sources.

    mtt fetch-data --dest DIR            # download, build, write DIR/<name>/{train,dev}.csv
    mtt fetch-data --dest DIR --raw-dir RAW --no-download   # build from files already in RAW

The notebooks run the same build on first use when ``MTT_DATA_DIR`` is unset, into the download
cache (:mod:`mtt_helpers.data.locate`). :func:`~mtt_helpers.data.fetch.pipeline.fetch_datasets` does
it all; its steps:

1. **Download** (:func:`~mtt_helpers.data.fetch.download.download`): plain HTTP (``urllib``) of the raw
   files listed in :data:`~mtt_helpers.data.fetch.sources.RAW_FILES`, each a file of a public GitHub
   repository at a pinned commit, from ``MTT_DATA_BASE_URL`` (default
   ``https://raw.githubusercontent.com``), with a progress bar. Every file has a recorded sha256; a
   file that does not match, or arrives cut short, is an error, and nothing of that download is kept.
2. **Build** (:func:`~mtt_helpers.data.fetch.build.build_datasets`): a pure function of the raw files. It applies the rules of
   the data card (``shared/data/README.md``): the same normalisation, de-duplication, label mapping,
   stratified splits (seed 13) and cross-split filters, and returns train and dev only. Test splits
   are built in memory, used as filters, and never written.
3. **Write** (:func:`~mtt_helpers.data.fetch.write.write_datasets`): all six files or none, never over
   existing files unless asked.

**Honesty note.** The download step has never reached GitHub: this project's machines cannot reach
the internet. It is tested end to end against a local HTTP server serving small fixture files in
each source's raw format (``tests/fixtures/fetch_data``), on which the build step is unit-tested too.
The folder of public datasets CI uses is what this build step writes from the real raw files of the
pinned commits (its data card says so and gives the row counts); the checksums above are those
files' git blobs, which is what a raw download returns. Two properties of the output worth knowing:
random splits come out in scikit-learn's shuffled order and TweetEval's train rows in source-file
order, and a text whose dedup key is empty (only emoji or punctuation) is de-duplicated on its full
text.
"""

from mtt_helpers.data.fetch.build import build_datasets
from mtt_helpers.data.fetch.download import ChecksumError, DownloadError, download, is_reachable, sha256_of, verify
from mtt_helpers.data.fetch.normalise import (
    collapse_whitespace,
    dedup_key,
    dedup_keys,
    deduplicate,
    detokenise_headline,
    normalise_tweet,
    split_stratified,
)
from mtt_helpers.data.fetch.pipeline import check_apart, fetch_datasets
from mtt_helpers.data.fetch.readers import read_huffpost, read_phrasebank, read_semeval_pool, read_tweeteval
from mtt_helpers.data.fetch.sources import (
    DATASETS,
    HUFFPOST,
    HUFFPOST_CATEGORIES,
    HUFFPOST_TOPIC,
    PHRASEBANK,
    RAW_FILES,
    SEED,
    SEMEVAL,
    SEMEVAL_SETS,
    TWEETEVAL,
    WRITTEN_SPLITS,
    BuildConfig,
    RawFile,
)
from mtt_helpers.data.fetch.write import output_paths, refuse_existing, write_datasets

__all__ = [
    "DATASETS", "HUFFPOST", "HUFFPOST_CATEGORIES", "HUFFPOST_TOPIC", "PHRASEBANK", "RAW_FILES", "SEED", "SEMEVAL",
    "SEMEVAL_SETS", "TWEETEVAL", "WRITTEN_SPLITS", "BuildConfig", "ChecksumError", "DownloadError", "RawFile",
    "build_datasets", "check_apart", "collapse_whitespace", "dedup_key", "dedup_keys", "deduplicate",
    "detokenise_headline", "download", "fetch_datasets", "is_reachable", "normalise_tweet", "output_paths",
    "read_huffpost", "read_phrasebank", "read_semeval_pool", "read_tweeteval", "refuse_existing", "sha256_of",
    "split_stratified", "verify", "write_datasets",
]
