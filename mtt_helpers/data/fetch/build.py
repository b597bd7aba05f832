"""Step 2 of the data build: train and dev splits from the raw files (a pure function; :mod:`.write` writes them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtt_helpers.data.fetch.normalise import (
    collapse_whitespace,
    dedup_keys,
    deduplicate,
    detokenise_headline,
    normalise_tweet,
    split_stratified,
)
from mtt_helpers.data.fetch.readers import read_huffpost, read_phrasebank, read_semeval_pool, read_tweeteval
from mtt_helpers.data.fetch.sources import HUFFPOST_TOPIC, BuildConfig


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
    built["tweeteval_sentiment"] = {"train": pool, "dev": tweet_dev}
    built["tweeteval_sentiment"]["train"].attrs["stats"] = stats
    test_keys |= tweet_test_keys

    # Financial PhraseBank: whitespace only, dedup, 60/10/30.
    phrasebank = read_phrasebank(raw_dir)
    phrasebank["text"] = phrasebank["text"].map(collapse_whitespace)
    phrasebank, stats = deduplicate(phrasebank)
    splits = split_stratified(phrasebank, config.phrasebank_fractions, "label", config.seed)
    test_keys |= set(dedup_keys(splits.pop("test")["text"]))
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
    test_keys |= set(dedup_keys(splits.pop("test")["text"]))
    built["huffpost_news_category"] = {name: part[["text", "label"]] for name, part in splits.items()}
    built["huffpost_news_category"]["train"].attrs["stats"] = stats

    # No train or dev text shares a key with any test text, in any dataset.
    for name, splits in built.items():
        for split, frame in splits.items():
            kept = _drop_keys(frame, test_keys)[["text", "label"]]
            kept.attrs["stats"] = {**frame.attrs.get("stats", {}), "overlap_any_test": len(frame) - len(kept)}
            splits[split] = kept
    return built

