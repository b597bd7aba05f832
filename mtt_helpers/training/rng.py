"""Seeded randomness for one run, without touching the caller's global generators."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Draws in the ``with`` block (dropout masks) are those after ``torch.manual_seed(seed)``;
    afterwards the caller's generators hold the state they had before.

    Restored: the CPU generator and, for a CUDA ``device``, that device's generator (the ones the
    block draws from). On another accelerator (Apple's ``mps``), ``torch.manual_seed`` seeds it
    as before, but its earlier state is not restored.
    """
    on_cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if on_cuda else []):
        torch.default_generator.manual_seed(seed)
        if on_cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        elif device.type != "cpu":
            torch.manual_seed(seed)
        yield
