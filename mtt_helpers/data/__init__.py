"""Datasets for the tutorial: the bundled jointly labelled set, the external public ones, and training tables.

* ``load_bundled()`` (:mod:`~mtt_helpers.data.bundled`): 1,800 sentences, each labelled with a topic
  **and** a sentiment, with a fixed train/dev/test split; shipped inside the package.
* ``load_external(name, split)`` and ``load_task_data(split)`` (:mod:`~mtt_helpers.data.external`): the
  public datasets from ``MTT_DATA_DIR``'s folder or the download cache (``~/.cache/mtt_helpers/data``,
  downloaded on first use), else the bundled set (offline, or ``MTT_DATA_DIR=bundled``).
* ``locate_data()`` (:mod:`~mtt_helpers.data.locate`): that choice, and ``DataSettings``
  (:mod:`~mtt_helpers.data.settings`): the environment variables behind it.
* ``multitask_frame(...)``, ``stratified_sample``, ``sample_fingerprint``, ``validation_split``, ``class_counts`` (:mod:`~mtt_helpers.data.frames`).
* ``TASK_LABELS``, ``IGNORE_INDEX``, ``encode_labels`` (:mod:`~mtt_helpers.data.labels`).
* Augmentation (:mod:`~mtt_helpers.data.augment`) and the rebuild of the public datasets
  (:mod:`mtt_helpers.data.fetch`).

Importing this package does not import torch (``encode_labels`` and ``NeighbourWords`` do, when called).
"""

from mtt_helpers.data.augment import NEGATIONS, NeighbourWords, augment_frame, random_edit
from mtt_helpers.data.bundled import BUNDLED_CSV, SPLITS, load_bundled
from mtt_helpers.data.csv_reader import drop_empty_texts, read_required_csv, read_text_csv
from mtt_helpers.data.external import SENTIMENT_DATASET, TOPIC_DATASET, TaskData, data_dir, load_external, load_task_data
from mtt_helpers.data.frames import class_counts, multitask_frame, sample_fingerprint, stratified_sample, validation_split
from mtt_helpers.data.labels import IGNORE_INDEX, TASK_LABELS, check_labels, encode_labels, infer_task
from mtt_helpers.data.locate import DataSource, locate_data
from mtt_helpers.data.settings import BASE_URL_ENV, BUNDLED, CACHE_DIR_ENV, DATA_DIR_ENV, DataSettings, default_cache_dir

__all__ = [
    "BASE_URL_ENV", "BUNDLED", "BUNDLED_CSV", "CACHE_DIR_ENV", "DATA_DIR_ENV", "IGNORE_INDEX", "NEGATIONS",
    "SENTIMENT_DATASET", "SPLITS", "TASK_LABELS", "TOPIC_DATASET", "DataSettings", "DataSource", "NeighbourWords",
    "TaskData", "augment_frame", "check_labels", "class_counts", "data_dir", "default_cache_dir", "drop_empty_texts",
    "encode_labels", "infer_task", "load_bundled", "load_external", "load_task_data", "locate_data", "multitask_frame",
    "random_edit", "read_required_csv", "read_text_csv", "sample_fingerprint", "stratified_sample", "validation_split",
]
