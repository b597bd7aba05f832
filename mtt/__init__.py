"""Production for the multitask_transformer tutorial: the ``mtt`` command, the HTTP service, and the public data.

* :mod:`mtt.cli`: ``mtt train | predict | export | serve | fetch-data`` (also ``python -m mtt``).
* :mod:`mtt.service`: the FastAPI service: dynamic batching, limits, slow-client timeouts.
* :mod:`mtt.client`: the service in a child process, and its load-test client.
* :mod:`mtt.backends`: ``load_predictor``: the torch model, or an ONNX export in fp32, int8 or int8-safe.
* :mod:`mtt.data`: where the public datasets are, and how they are downloaded and rebuilt.

``mtt`` may import ``mtt_helpers`` (the tutorial's code), never the reverse. ``mtt --help``, every
argument check, the ONNX backend and the service import no torch.
"""
