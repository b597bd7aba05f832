"""The raw files of the four public sources, read into ``text,label`` (or ``text,category``) tables.

Each reader names the file and line of anything that does not have the source's raw format.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import yaml

from mtt_helpers.data.fetch.sources import HUFFPOST_CATEGORIES, RAW_FILES, SEMEVAL_SETS


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
