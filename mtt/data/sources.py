"""What the data build reads, and with which settings: every raw file pinned to a commit, the
HuffPost category maps, and the sizes and seed of the splits (the data card's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtt_core.labels import DATASET_TASKS

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
"""Where the raw files of the public sources are downloaded from (``MTT_DATA_BASE_URL`` names a mirror)."""

SEED = 13
"""Seed of every random split and sample (data card: "Random splits were stratified and used seed 13")."""

WRITTEN_SPLITS = ("train", "dev")
"""The only splits this module ever writes."""

DATASETS = tuple(DATASET_TASKS)
"""The datasets the build writes, each as ``<name>/train.csv`` and ``<name>/dev.csv``."""


@dataclass(frozen=True)
class RawFile:
    """One raw file of a public source, pinned to a commit."""

    repo: str
    """GitHub ``owner/name``."""
    commit: str
    """40-hex commit the file is read at."""
    path: str
    """Path of the file inside the repository."""
    sha256: str
    """Expected sha256 of the file (of the git blob at the commit, which is what a raw download returns)."""

    def url_at(self, base_url: str) -> str:
        """URL of the file at the pinned commit under ``base_url`` (a mirror of raw.githubusercontent.com)."""
        return f"{base_url.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"

    @property
    def url(self) -> str:
        """Raw-content URL of the file at the pinned commit on GitHub."""
        return self.url_at(DEFAULT_BASE_URL)

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

SHA256 = {
    "tweeteval_val_text": "e5b021e6fc45064c260b09814b803d8f56cada519c4d952d72f43d48a350a964",
    "tweeteval_val_labels": "b4566926c72e2e4e2916c864def94e76c4cdde52446af2c7ba4fc2006e057e51",
    "tweeteval_test_text": "09a93a55c63fd93f97485ef7302889d7edb4091cd49733aa37da094f0bfa0675",
    "tweeteval_mapping": "c0572796fbe261d8ea5fd16c5061076fbba49bc69fc865d6abccaf60daacee24",
    "semeval_2013train": "111969d156c516b40bd504fcedcca52bbd44ec24add6f59290eb94df9b9c392c",
    "semeval_2013dev": "e402ab2e9bad766275ef5af490e2c3b0edca8236d60e6e69227589186bffd896",
    "semeval_2013test": "eb98d2342016eefda22dd563aa1ccde18aed399eeba572d8c963bbc56c196164",
    "semeval_2014test": "d6aa09ca41031e3deefb7e5b2f74f53260ab374f993e2275d8e4ccec6b210253",
    "semeval_2014sarcasm": "8321459374f88fc32b0b93da76c8740e7a3f30256886dbe9fcebb04b0ae8906f",
    "semeval_2015train": "29780e613f562a511fa427196503c3f95fea6c0298470e157deab88a0e0ed65e",
    "semeval_2015test": "54b3481924c025d31ac9669c049603b91035b40e8becd6629fb9476a6d9a62f4",
    "semeval_2016train": "f49f65cf5e94b47d077ab7715d3d0a656c09b5c71608678a672d7378ef79c932",
    "semeval_2016dev": "47bda81cb91db2bf92222a5f20742b5e3edc14eb391e74b882b284e5afd0c8bb",
    "semeval_2016devtest": "c16686ebaa3b61770f4d4d2a60d051715146950faa93e039bb0aefb3523c3b38",
    "semeval_2016test": "c90ee3e9cca3c4b019cc45169190c0bcc1c9e2eda938527e31d12040798dc453",
    "phrasebank": "62bfa1a67f7b476a7e67fda3213d8d7f6890f5aaccdbc747c7555b94fc6cd171",
    "huffpost": "2485569669dd7ec5bf1e2f7468568a1d019faeb9941205bc9fb7edae93c488d6",
    "huffpost_verbalizers": "82273dca88d002e28d0b39fd1fe5841968534e6ee0de2925faade469a9909dd0",
}
"""sha256 of each raw file (the git blob at its pinned commit, which is what a raw download returns)."""

_LOCATIONS = {
    "tweeteval_val_text": (*TWEETEVAL, "datasets/sentiment/val_text.txt"),
    "tweeteval_val_labels": (*TWEETEVAL, "datasets/sentiment/val_labels.txt"),
    "tweeteval_test_text": (*TWEETEVAL, "datasets/sentiment/test_text.txt"),
    "tweeteval_mapping": (*TWEETEVAL, "datasets/sentiment/mapping.txt"),
    **{f"semeval_{name}": (*SEMEVAL, f"dataset/Subtask_A/downloaded/twitter-{name}-A.tsv") for name in SEMEVAL_SETS},
    "phrasebank": (*PHRASEBANK, "Sentences_50Agree.txt"),
    "huffpost": (*HUFFPOST, "data/huffpost.json"),
    "huffpost_verbalizers": (*HUFFPOST, "configs/hard_verbalizers.yaml"),
}

RAW_FILES: dict[str, RawFile] = {key: RawFile(*location, SHA256[key]) for key, location in _LOCATIONS.items()}
"""Every file the build reads, with its sha256: a download that does not match is an error and is not kept."""

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
