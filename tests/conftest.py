"""Shared fixtures: the encoder is loaded once per test session (about 2 s)."""

import pytest

from mtt_helpers import MultiTaskSentenceTransformer, load_encoder, quiet, set_seed

quiet()


@pytest.fixture(scope="session")
def encoder():
    return load_encoder(device="cpu")


@pytest.fixture()
def model(encoder):
    set_seed(0)
    return MultiTaskSentenceTransformer(encoder).eval()
