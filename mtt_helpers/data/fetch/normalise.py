"""The data card's text rules: normalisation of tweets and headlines, dedup keys, de-duplication, stratified splits."""

from __future__ import annotations

import html
import re

import pandas as pd
from sklearn.model_selection import train_test_split

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
