"""What the data build reads, and with which settings: every raw file pinned to a commit, the
HuffPost category maps, and the sizes and seed of the splits (the data card's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
