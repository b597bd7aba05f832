"""Shared fixtures: the encoder is loaded once per test session (about 2 s); the seeded model, its
saved copy and its ONNX export are built once and shared by every test file that needs them."""

import pytest

from mtt_helpers import MultiTaskSentenceTransformer, load_encoder, quiet, set_seed

quiet()


def seeded_model(encoder):
    """The test model: all-MiniLM-L6-v2 and seeded random heads, in eval mode."""
    set_seed(0)
    return MultiTaskSentenceTransformer(encoder).eval()


@pytest.fixture(autouse=True)
def no_download_from_the_internet(tmp_path_factory, monkeypatch):
    """A test that leaves ``MTT_DATA_DIR`` unset finds an empty cache of its own and no download server
    (a closed port on 127.0.0.1): it never writes to ``~/.cache`` or reaches the internet."""
    monkeypatch.setenv("MTT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mtt_cache_unused" / "data"))
    monkeypatch.setenv("MTT_DATA_BASE_URL", "http://127.0.0.1:9")


@pytest.fixture(scope="session")
def encoder():
    return load_encoder(device="cpu")


@pytest.fixture()
def model(encoder):
    return seeded_model(encoder)


@pytest.fixture(scope="session")
def shared_model(encoder):
    """The seeded model that ``saved_model`` and ``onnx_export`` hold; shared, so never change it."""
    return seeded_model(encoder)


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory, shared_model):
    """``shared_model`` saved without its encoder (it is rebuilt from the offline package): ``.../saved/model``."""
    directory = tmp_path_factory.mktemp("saved") / "model"
    shared_model.save(directory, include_encoder=False)
    return directory


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory, shared_model):
    """``shared_model`` exported to ONNX: ``model.onnx`` and ``model.int8.onnx`` in one folder, with
    ``config.json``, the tokenizer files and the manifest."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mtt_helpers.onnx import export_onnx, quantize_int8

    directory = tmp_path_factory.mktemp("onnx_export") / "export"
    quantize_int8(export_onnx(shared_model, directory))
    return directory
