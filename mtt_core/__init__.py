"""The torch-free core shared by the tutorial (``mtt_helpers``) and production (``mtt``).

What a saved model and an ONNX export hold (``model_files``: ``config.json``, the labels, the token
limit), how files are written and checked (``files``: whole or not at all, with digests), what a
text is and how predictions look (``predictions``), how CSV files are read (``csv_files``), and the
ONNX runtime with its int8 cascade (``onnx_runtime``). Nothing here imports torch, so the ONNX
predictor, the service and the ``mtt`` command's checks start fast and small; and this file imports
nothing at all, so reading one module never loads the others.
"""
