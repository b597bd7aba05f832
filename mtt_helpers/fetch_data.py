"""Rebuild the external datasets (``train.csv``/``dev.csv``) from their public sources.

    python -m mtt_helpers.fetch_data --dest DIR            # download, build, write DIR/<name>/{train,dev}.csv
    python -m mtt_helpers.fetch_data --dest DIR --raw-dir RAW --no-download   # build from files already in RAW

Two steps:

1. **Download** (:func:`download`): plain HTTP (``urllib``) of the raw files listed in
   :data:`RAW_FILES`, each a file of a public GitHub repository at a pinned commit. Each file has a
   sha256 entry; ``None`` means *not yet verified*: nothing could be downloaded on the machine this
   module was written on, so no checksum has been recorded yet. Such a file is downloaded, its
   sha256 is printed (record it in :data:`RAW_FILES`), and a warning says it was not verified. A
   file with a recorded checksum that does not match is an error and is not kept.
2. **Build** (:func:`build_datasets`): a pure function of the raw files. It applies the rules of
   the data card (``shared/data/README.md``): the same normalisation, de-duplication, label mapping,
   stratified splits (seed 13) and cross-split filters, and returns train and dev only. Test splits
   are built in memory, used as filters, and never written.

**Honesty note.** The download step has never been run: this project's machines cannot reach the
internet. The build step is unit-tested on small fixture files written in each source's raw format
(``tests/fixtures/fetch_data``). Known or possible differences from the folder CI uses:

* Row membership of the random splits cannot be checked without the raw files. FPB's split sizes
  (2,900/483/1,450 before the cross filter) follow from the rounding used here; for HuffPost this
  rounding gives 8,486/1,212/2,424 rows, the CI copy has 8,486/1,213/2,423.
* Row order: splits come out in scikit-learn's shuffled order, TweetEval train in source-file order.
* HuffPost's detokeniser is reconstructed from the data card and from the CI copy's text. Run on
  the CI copy's 9,699 train/dev headlines it changes one (``just imagine - tony wagner``: the
  original kept that dash spaced, this rule joins ``word - word``). Run on the CI copy's TweetEval
  dev set, the tweet rules change nothing; on its train set they change 35 tweets, all with
  doubly escaped HTML (``&amp;amp;``), which one unescape (the data card's rule) leaves behind.
* A text whose dedup key is empty (only emoji or punctuation) is de-duplicated on its full text.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import sys
import tempfile
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

SEED = 13
"""Seed of every random split and sample (data card: "Random splits were stratified and used seed 13")."""

WRITTEN_SPLITS = ("train", "dev")
"""The only splits this module ever writes."""


@dataclass(frozen=True)
class RawFile:
    """One raw file of a public source, pinned to a commit."""

    repo: str
    """GitHub ``owner/name``."""
    commit: str
    """40-hex commit the file is read at."""
    path: str
    """Path of the file inside the repository."""
    sha256: str | None = None
    """Expected sha256 of the file; ``None`` = not yet verified (never downloaded here)."""

    @property
    def url(self) -> str:
        """Raw-content URL of the file at the pinned commit."""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    @property
    def local_path(self) -> Path:
        """Where the file is stored under the raw folder: ``owner__name/path``."""
        return Path(self.repo.replace("/", "__")) / self.path


TWEETEVAL = ("cardiffnlp/tweeteval", "4fbd22cd78421f05b1ecdb4fc5725bc7a7bd8f66")
SEMEVAL = ("cbaziotis/datastories-semeval2017-task4", "faeee5fd1c2cf38e32179a4676dff53ae01adfa8")
PHRASEBANK = ("pkatwate/finBERT", "5ca56265657fe3fc2fd6c3576aa3933f61b7a5bc")
HUFFPOST = ("ws-jiang/MetaPrompter_public", "dea17d573a5eb4f31b3366ba1fe88b1beb865c50")

SEMEVAL_SETS = ("2013train", "2013dev", "2013test", "2014test", "2014sarcasm", "2015train", "2015test",
                "2016train", "2016dev", "2016devtest", "2016test")
"""The SemEval-2017 Task 4A message-polarity sets pooled into TweetEval's train."""

RAW_FILES: dict[str, RawFile] = {
    "tweeteval_val_text": RawFile(*TWEETEVAL, "datasets/sentiment/val_text.txt"),
    "tweeteval_val_labels": RawFile(*TWEETEVAL, "datasets/sentiment/val_labels.txt"),
    "tweeteval_test_text": RawFile(*TWEETEVAL, "datasets/sentiment/test_text.txt"),
    "tweeteval_mapping": RawFile(*TWEETEVAL, "datasets/sentiment/mapping.txt"),
    **{f"semeval_{name}": RawFile(*SEMEVAL, f"dataset/Subtask_A/downloaded/twitter-{name}-A.tsv") for name in SEMEVAL_SETS},
    "phrasebank": RawFile(*PHRASEBANK, "Sentences_50Agree.txt"),
    "huffpost": RawFile(*HUFFPOST, "data/huffpost.json"),
    "huffpost_verbalizers": RawFile(*HUFFPOST, "configs/hard_verbalizers.yaml"),
}
"""Every file the build reads. sha256 ``None``: not yet verified (see the module docstring)."""

HUFFPOST_CATEGORIES = (
    "POLITICS", "WELLNESS", "ENTERTAINMENT", "TRAVEL", "STYLE & BEAUTY", "PARENTING", "HEALTHY LIVING",
    "QUEER VOICES", "FOOD & DRINK", "BUSINESS", "COMEDY", "SPORTS", "BLACK VOICES", "HOME & LIVING", "PARENTS",
    "THE WORLDPOST", "WEDDINGS", "WOMEN", "IMPACT", "DIVORCE", "CRIME", "MEDIA", "WEIRD NEWS", "GREEN",
    "WORLDPOST", "RELIGION", "STYLE", "SCIENCE", "WORLD NEWS", "TASTE", "TECH", "MONEY", "ARTS", "FIFTY",
    "GOOD NEWS", "ARTS & CULTURE", "ENVIRONMENT", "COLLEGE", "LATINO VOICES", "CULTURE & ARTS", "EDUCATION",
)
"""HuffPost category of each integer label 0..40 in ``huffpost.json`` (v2 frequency order)."""

HUFFPOST_TOPIC = {
    "SPORTS": "sports", "WELLNESS": "health", "HEALTHY LIVING": "health", "TECH": "tech",
    "BUSINESS": "finance", "MONEY": "finance", "EDUCATION": "education", "COLLEGE": "education",
}
"""Our topic for each mapped HuffPost category; every other category is ``other``."""


@dataclass
class BuildConfig:
    """Sizes and seeds of the build (defaults: the data card's)."""

    seed: int = SEED
    """Seed of the HuffPost ``other`` sample and of every split."""
    huffpost_other_per_category: int = 150
    """Headlines sampled from each of the 33 categories mapped to ``other``."""
    phrasebank_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.6, "dev": 0.1, "test": 0.3})
    """FPB split shares (no official split exists)."""
    huffpost_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.7, "dev": 0.1, "test": 0.2})
    """HuffPost split shares, stratified on the source category."""
    tweet_prefix_chars: int = 40
    """A pool tweet whose dedup key shares this many leading characters with a dev/test key is dropped."""


# --------------------------------------------------------------------------- download


class ChecksumError(RuntimeError):
    """A downloaded file does not have its recorded sha256."""


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, raw: RawFile) -> str:
    """Checks ``path`` against ``raw.sha256``; returns the file's sha256.

    Raises:
        ChecksumError: a checksum is recorded and differs.
    """
    actual = sha256_of(path)
    if raw.sha256 is None:
        warnings.warn(f"{raw.url}: no sha256 recorded, not verified (its sha256 is {actual}).", stacklevel=2)
    elif actual != raw.sha256:
        raise ChecksumError(f"{raw.url}: sha256 {actual} does not match the recorded {raw.sha256}.")
    return actual


def download(
    raw_dir: str | Path,
    files: Iterable[RawFile] = RAW_FILES.values(),
    urlopen: Callable = urllib.request.urlopen,
    timeout: float = 120.0,
) -> dict[str, str]:
    """Downloads the raw files into ``raw_dir`` (``owner__name/path``), verifying checksums.

    A file already present is verified and kept. A download is written to ``<file>.part`` and
    renamed only once verified, so a failed or mismatching download leaves nothing behind.

    Args:
        raw_dir: Folder for the raw files.
        files: What to fetch.
        urlopen: ``urllib.request.urlopen`` or a stand-in (tests).
        timeout: Seconds per request.

    Returns:
        The sha256 of every file, by URL, to record in :data:`RAW_FILES`.
    """
    raw_dir = Path(raw_dir)
    checksums = {}
    for raw in files:
        target = raw_dir / raw.local_path
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            print(f"downloading {raw.url}", file=sys.stderr)
            try:
                with urlopen(raw.url, timeout=timeout) as response, open(partial, "wb") as handle:
                    while block := response.read(1 << 20):
                        handle.write(block)
                verify(partial, raw)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(target)
        checksums[raw.url] = verify(target, raw)
    return checksums


# --------------------------------------------------------------------------- text rules

_MENTION = re.compile(r"@\w+")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (non-breaking spaces included) become one space; ends stripped."""
    return _WHITESPACE.sub(" ", text).strip()


def normalise_tweet(text: str) -> str:
    """The data card's tweet normalisation, in its order.

    Literal ``\\uXXXX`` escapes decoded; ``\\"`` -> ``"`` and runs of ``"`` collapsed; HTML
    unescaped once; ``@mention`` -> ``@user``; URLs removed; whitespace collapsed; one pair of
    double quotes wrapping the whole tweet stripped.
    """
    text = _UNICODE_ESCAPE.sub(lambda match: chr(int(match[1], 16)), text)
    text = re.sub(r'"{2,}', '"', text.replace('\\"', '"'))
    text = html.unescape(text)
    text = _MENTION.sub("@user", text)
    text = collapse_whitespace(_URL.sub(" ", text))
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


_DETOKENISE = [
    (re.compile(r" n(['’])t\b"), r"n\1t"),                      # do n't -> don't
    (re.compile(r" (['’])(s|d|re|ll|ve|m)\b"), r"\1\2"),        # trump 's -> trump's
    (re.compile(r" ([,.!?:;%’”)])"), r"\1"),                    # no space before punctuation or a closer
    (re.compile(r"([‘“(]) "), r"\1"),                           # no space after an opener
    (re.compile(r"\$ (?=\d)"), "$"),                            # $ 5 -> $5
    (re.compile(r"(?<=\w) - (?=\w)"), "-"),                     # wolf - like -> wolf-like
]


def detokenise_headline(text: str) -> str:
    """Undoes the lower-cased tokenisation of Bao et al.'s HuffPost headlines (lightly).

    Straight single and double quotes keep their inner spaces (``' tonight show '``): which side a
    straight quote closes cannot be told reliably, and the CI copy keeps them too.
    """
    text = collapse_whitespace(text)
    for pattern, replacement in _DETOKENISE:
        text = pattern.sub(replacement, text)
    return text


def dedup_key(text: str) -> str:
    """The dedup key: lower-cased, @mentions and URLs removed, alphanumerics only."""
    text = _URL.sub(" ", _MENTION.sub(" ", text.lower()))
    return "".join(character for character in text if character.isalnum())


def _keys(texts: pd.Series) -> pd.Series:
    """Dedup keys; an empty key (emoji-only text) falls back to the lower-cased text itself."""
    keys = texts.map(dedup_key)
    return keys.where(keys != "", "\0" + texts.str.lower())


def deduplicate(frame: pd.DataFrame, label_column: str = "label") -> tuple[pd.DataFrame, dict[str, int]]:
    """Drops duplicates by :func:`dedup_key`: all copies of a key with conflicting labels, else all but the first.

    Returns:
        The kept rows (index reset) and ``{"duplicates": n, "conflicting": n}`` rows dropped.
    """
    keys = _keys(frame["text"])
    conflicting = keys.isin(keys[frame.groupby(keys)[label_column].transform("nunique") > 1])
    kept = frame.loc[~conflicting]
    duplicate = keys[~conflicting].duplicated()
    stats = {"duplicates": int(duplicate.sum()), "conflicting": int(conflicting.sum())}
    return kept.loc[~duplicate.to_numpy()].reset_index(drop=True), stats


def split_stratified(frame: pd.DataFrame, fractions: dict[str, float], strata: str, seed: int) -> dict[str, pd.DataFrame]:
    """Splits into ``train``/``dev``/``test`` of ``round(fraction * n)`` rows (train takes the rest), stratified.

    Test is drawn first, then dev from the remainder, each with ``train_test_split(random_state=seed)``.
    """
    if set(fractions) != {"train", "dev", "test"} or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"fractions must give train, dev and test shares summing to 1, got {fractions}.")
    n_test, n_dev = round(fractions["test"] * len(frame)), round(fractions["dev"] * len(frame))
    rest, test = train_test_split(frame, test_size=n_test, stratify=frame[strata], random_state=seed)
    train, dev = train_test_split(rest, test_size=n_dev, stratify=rest[strata], random_state=seed)
    return {name: part.reset_index(drop=True) for name, part in (("train", train), ("dev", dev), ("test", test))}


# --------------------------------------------------------------------------- raw readers


def _path(raw_dir: Path, key: str) -> Path:
    path = raw_dir / RAW_FILES[key].local_path
    if not path.is_file():
        raise FileNotFoundError(f"Raw file missing: {path} (from {RAW_FILES[key].url}); run the download step.")
    return path


def _lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """The file's lines without line endings, a final empty line dropped."""
    return path.read_text(encoding=encoding).splitlines()


def read_tweeteval(raw_dir: Path) -> tuple[pd.DataFrame, pd.Series]:
    """TweetEval sentiment: ``val`` as ``text,label`` (class names) and the ``test`` texts (for filtering only)."""
    mapping = {}
    for number, line in enumerate(_lines(_path(raw_dir, "tweeteval_mapping")), 1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{_path(raw_dir, 'tweeteval_mapping')}:{number}: expected '<id> <name>', got {line!r}")
        mapping[fields[0]] = fields[1]
    texts, labels = _lines(_path(raw_dir, "tweeteval_val_text")), _lines(_path(raw_dir, "tweeteval_val_labels"))
    if len(texts) != len(labels):
        raise ValueError(f"TweetEval val: {len(texts)} texts but {len(labels)} labels.")
    unknown = sorted(set(label.strip() for label in labels) - set(mapping))
    if unknown:
        raise ValueError(f"TweetEval val labels {unknown} are not in mapping.txt {mapping}.")
    val = pd.DataFrame({"text": texts, "label": [mapping[label.strip()] for label in labels]})
    return val, pd.Series(_lines(_path(raw_dir, "tweeteval_test_text")))


def read_semeval_pool(raw_dir: Path) -> pd.DataFrame:
    """The SemEval 2013-2016 sets (``id<TAB>label<TAB>text[<TAB>]``) as one ``text,label`` frame, file order."""
    rows = []
    for name in SEMEVAL_SETS:
        path = _path(raw_dir, f"semeval_{name}")
        for number, line in enumerate(_lines(path), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 3 or fields[1] not in ("negative", "neutral", "positive"):
                raise ValueError(f"{path}:{number}: expected 'id<TAB>negative|neutral|positive<TAB>text', got {line[:80]!r}")
            rows.append((" ".join(fields[2:]), fields[1]))
    return pd.DataFrame(rows, columns=["text", "label"])


def read_phrasebank(raw_dir: Path) -> pd.DataFrame:
    """``Sentences_50Agree.txt`` (latin-1, one ``sentence@label`` per line) as ``text,label``."""
    path = _path(raw_dir, "phrasebank")
    rows = []
    for number, line in enumerate(_lines(path, encoding="latin-1"), 1):
        if not line.strip():
            continue
        text, at, label = line.rpartition("@")
        if not at or label.strip() not in ("negative", "neutral", "positive"):
            raise ValueError(f"{path}:{number}: expected 'sentence@negative|neutral|positive', got {line[-60:]!r}")
        rows.append((text, label.strip()))
    return pd.DataFrame(rows, columns=["text", "label"])


def read_huffpost(raw_dir: Path) -> pd.DataFrame:
    """``huffpost.json`` (JSON lines ``{"raw", "label"}``) as ``text,category``, after checking the verbalizers.

    The verbalizer file names each integer label in a few words; the first word of each must
    occur in :data:`HUFFPOST_CATEGORIES`' name for that id, so a reordered file is caught.
    """
    verbalizers = yaml.safe_load(_path(raw_dir, "huffpost_verbalizers").read_text(encoding="utf-8"))["HuffPost"]
    if sorted(verbalizers) != list(range(len(HUFFPOST_CATEGORIES))):
        raise ValueError(f"HuffPost verbalizers have ids {sorted(verbalizers)}, expected 0..{len(HUFFPOST_CATEGORIES) - 1}.")
    for label, words in verbalizers.items():
        first = words[0].split()[0].upper()
        if first not in re.sub(r"[^A-Z]", "", HUFFPOST_CATEGORIES[label]):
            raise ValueError(f"HuffPost label {label}: verbalizer {words} does not name {HUFFPOST_CATEGORIES[label]!r}.")
    path = _path(raw_dir, "huffpost")
    rows = []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            rows.append((record["raw"], HUFFPOST_CATEGORIES[record["label"]]))
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ValueError(f"{path}:{number}: expected {{\"raw\": str, \"label\": 0..40}}: {error}") from error
    return pd.DataFrame(rows, columns=["text", "category"])


# --------------------------------------------------------------------------- build


def _drop_keys(frame: pd.DataFrame, keys: set[str], prefixes: set[str] = frozenset(), prefix_chars: int = 0) -> pd.DataFrame:
    """Rows whose key is not in ``keys`` (and whose key prefix is not in ``prefixes``)."""
    row_keys = _keys(frame["text"])
    drop = row_keys.isin(keys)
    if prefixes:
        drop |= row_keys.str[:prefix_chars].isin(prefixes)
    return frame.loc[~drop].reset_index(drop=True)


def build_datasets(raw_dir: str | Path, config: BuildConfig | None = None) -> dict[str, dict[str, pd.DataFrame]]:
    """Builds every dataset's train and dev splits from the raw files. Pure: reads, never writes.

    Args:
        raw_dir: Folder the download step filled (``owner__name/path``).
        config: Sizes and seed; defaults to the data card's.

    Returns:
        ``{name: {"train": frame, "dev": frame}}``, frames with columns ``text, label``.
        ``attrs["stats"]`` of each train frame counts what the rules dropped.
    """
    raw_dir, config = Path(raw_dir), config or BuildConfig()
    built, test_keys = {}, set()

    # TweetEval: dev = TweetEval val; train = the SemEval pool minus anything overlapping dev or test.
    val, tweet_test = read_tweeteval(raw_dir)
    val["text"] = val["text"].map(normalise_tweet)
    tweet_dev, _ = deduplicate(val)
    tweet_test_keys = set(_keys(tweet_test.map(normalise_tweet)))
    pool = read_semeval_pool(raw_dir)
    pool["text"] = pool["text"].map(normalise_tweet)
    pool, stats = deduplicate(pool)
    held = tweet_test_keys | set(_keys(tweet_dev["text"]))
    prefixes = {key[: config.tweet_prefix_chars] for key in held if not key.startswith("\0")}
    before = len(pool)
    pool = _drop_keys(pool, held, prefixes, config.tweet_prefix_chars)
    stats["overlap_dev_or_test"] = before - len(pool)
    built["tweeteval_sentiment"] = {"train": pool, "dev": tweet_dev}
    built["tweeteval_sentiment"]["train"].attrs["stats"] = stats
    test_keys |= tweet_test_keys

    # Financial PhraseBank: whitespace only, dedup, 60/10/30.
    phrasebank = read_phrasebank(raw_dir)
    phrasebank["text"] = phrasebank["text"].map(collapse_whitespace)
    phrasebank, stats = deduplicate(phrasebank)
    splits = split_stratified(phrasebank, config.phrasebank_fractions, "label", config.seed)
    test_keys |= set(_keys(splits.pop("test")["text"]))
    built["financial_phrasebank"] = splits
    splits["train"].attrs["stats"] = stats

    # HuffPost: map onto our topics, sample `other`, detokenise, dedup, 70/10/20 by source category.
    huffpost = read_huffpost(raw_dir)
    mapped = huffpost["category"].isin(list(HUFFPOST_TOPIC))
    other = huffpost.loc[~mapped].groupby("category", sort=True).sample(
        n=config.huffpost_other_per_category, random_state=config.seed)
    huffpost = pd.concat([huffpost.loc[mapped], other]).sort_index().reset_index(drop=True)
    huffpost["label"] = huffpost["category"].map(HUFFPOST_TOPIC).fillna("other")
    huffpost["text"] = huffpost["text"].map(detokenise_headline)
    huffpost, stats = deduplicate(huffpost)
    splits = split_stratified(huffpost, config.huffpost_fractions, "category", config.seed)
    test_keys |= set(_keys(splits.pop("test")["text"]))
    built["huffpost_news_category"] = {name: part[["text", "label"]] for name, part in splits.items()}
    built["huffpost_news_category"]["train"].attrs["stats"] = stats

    # No train or dev text shares a key with any test text, in any dataset.
    for name, splits in built.items():
        for split, frame in splits.items():
            kept = _drop_keys(frame, test_keys)[["text", "label"]]
            kept.attrs["stats"] = {**frame.attrs.get("stats", {}), "overlap_any_test": len(frame) - len(kept)}
            splits[split] = kept
    return built


def write_datasets(built: dict[str, dict[str, pd.DataFrame]], dest: str | Path, overwrite: bool = False) -> list[Path]:
    """Writes ``dest/<name>/{train,dev}.csv`` (UTF-8, ``text,label``, minimal quoting). Test splits are refused.

    Returns:
        The files written.
    """
    dest, written = Path(dest), []
    for name, splits in built.items():
        extra = set(splits) - set(WRITTEN_SPLITS)
        if extra:
            raise ValueError(f"{name}: refusing to write split(s) {sorted(extra)}; only {WRITTEN_SPLITS} are written.")
        for split, frame in splits.items():
            path = dest / name / f"{split}.csv"
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} exists; pass --overwrite to replace it.")
            path.parent.mkdir(parents=True, exist_ok=True)
            frame[["text", "label"]].to_csv(path, index=False, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: download (unless ``--no-download``), build, write."""
    parser = argparse.ArgumentParser(prog="python -m mtt_helpers.fetch_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", required=True, help="folder to write <dataset>/{train,dev}.csv into (MTT_DATA_DIR)")
    parser.add_argument("--raw-dir", help="keep the raw downloads here (default: a temporary folder, deleted after)")
    parser.add_argument("--no-download", action="store_true", help="build from the files already in --raw-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace existing train.csv/dev.csv files")
    args = parser.parse_args(argv)

    from mtt_helpers.cli_common import fail

    dest = Path(args.dest).expanduser().resolve()
    if args.no_download and not args.raw_dir:
        fail("--no-download needs --raw-dir (the folder holding the raw files)")
    if args.raw_dir and dest in Path(args.raw_dir).expanduser().resolve().parents:
        fail("--raw-dir must not be inside --dest: the raw files hold test splits, which stay out of the data folder")
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


if __name__ == "__main__":
    main()
