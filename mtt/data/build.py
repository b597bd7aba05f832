"""Building the public datasets from their raw files: a pure function of those files (nothing is written here).

The rules are the data card's (``shared/data/README.md``): each source's raw format read as it is
(naming the file and line of anything else), the same normalisation, de-duplication, label mapping,
stratified splits (seed 13) and cross-split filters. Test splits are built in memory, used as filters,
and never returned.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

from mtt_core.labels import FINANCE_DATASET, SENTIMENT_DATASET, TOPIC_DATASET
from mtt.data.sources import HUFFPOST_CATEGORIES, HUFFPOST_TOPIC, RAW_FILES, SEMEVAL_SETS, BuildConfig


# ----------------------------------------------------------------------------- normalisation
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


def dedup_keys(texts: pd.Series) -> pd.Series:
    """Dedup keys; an empty key (emoji-only text) falls back to the lower-cased text itself."""
    keys = texts.map(dedup_key)
    return keys.where(keys != "", "\0" + texts.str.lower())


def deduplicate(frame: pd.DataFrame, label_column: str = "label") -> tuple[pd.DataFrame, dict[str, int]]:
    """Drops duplicates by :func:`dedup_key`: all copies of a key with conflicting labels, else all but the first.

    Returns:
        The kept rows (index reset) and ``{"duplicates": n, "conflicting": n}`` rows dropped.
    """
    keys = dedup_keys(frame["text"])
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


# ----------------------------------------------------------------------------- reading the raw files
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


# ----------------------------------------------------------------------------- the build
def _drop_keys(frame: pd.DataFrame, keys: set[str], prefixes: set[str] = frozenset(), prefix_chars: int = 0) -> pd.DataFrame:
    """Rows whose key is not in ``keys`` (and whose key prefix is not in ``prefixes``)."""
    row_keys = dedup_keys(frame["text"])
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
    tweet_test_keys = set(dedup_keys(tweet_test.map(normalise_tweet)))
    pool = read_semeval_pool(raw_dir)
    pool["text"] = pool["text"].map(normalise_tweet)
    pool, stats = deduplicate(pool)
    held = tweet_test_keys | set(dedup_keys(tweet_dev["text"]))
    prefixes = {key[: config.tweet_prefix_chars] for key in held if not key.startswith("\0")}
    before = len(pool)
    pool = _drop_keys(pool, held, prefixes, config.tweet_prefix_chars)
    stats["overlap_dev_or_test"] = before - len(pool)
    built[SENTIMENT_DATASET] = {"train": pool, "dev": tweet_dev}
    built[SENTIMENT_DATASET]["train"].attrs["stats"] = stats
    test_keys |= tweet_test_keys

    # Financial PhraseBank: whitespace only, dedup, 60/10/30.
    phrasebank = read_phrasebank(raw_dir)
    phrasebank["text"] = phrasebank["text"].map(collapse_whitespace)
    phrasebank, stats = deduplicate(phrasebank)
    splits = split_stratified(phrasebank, config.phrasebank_fractions, "label", config.seed)
    test_keys |= set(dedup_keys(splits.pop("test")["text"]))
    built[FINANCE_DATASET] = splits
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
    test_keys |= set(dedup_keys(splits.pop("test")["text"]))
    built[TOPIC_DATASET] = {name: part[["text", "label"]] for name, part in splits.items()}
    built[TOPIC_DATASET]["train"].attrs["stats"] = stats

    # No train or dev text shares a key with any test text, in any dataset.
    for name, splits in built.items():
        for split, frame in splits.items():
            kept = _drop_keys(frame, test_keys)[["text", "label"]]
            kept.attrs["stats"] = {**frame.attrs.get("stats", {}), "overlap_any_test": len(frame) - len(kept)}
            splits[split] = kept
    return built

